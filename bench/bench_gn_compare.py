"""Gauss-Newton Hessians of autoencoders: HSS against randomized SVD, Nystrom and KFAC
at the same work (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_gn_compare.py [--quick]

Three autoencoders, briefly trained with Adam (full batch) so that H is taken at a
meaningful point: (a) 64-32-64 on 500 digits, (b) 64-128-64 on all 1797 digits,
(c) 784-32-784 on 1000 Fashion-MNIST images (50,992 parameters). For each, a "low"
and a "high" budget of HSS built by ``compress_sketch`` (randomized HSS from products
of H, tree over ``G.neuron_order()``: each unit's weights then its bias; the HSS
row), plus the entry-only ``compress`` at its
low setting (HSS-entries) for reference. %K = the fraction of the N^2 entries of H
touched (compression: entries_fraction, where a product counts N entries per column;
RSVD/Nystrom: N per product column; KFAC: its factor sizes). RSVD (one power
iteration: 3 product columns per rank) and Nystrom (one product column per rank) are
given the same %K as each HSS run (rank capped at 4000 to bound the run time; their
own %K is then reported). eps_F = |H~ - H|_F / |H|_F
estimated from 200 random exact rows of H (H e_a by the matrix-free product), the
same rows for every method. H is the Gauss-Newton matrix plus a damping of 1e-10 x
its mean diagonal (the source compress sees; zero rows need it for the angle
distance). Writes JSON and a spectrum plot (top eigenvalues of H and H~, net (a)).
"""
import argparse
import os
import time

import numpy as np
from _results import write_results

import hsspetsc
from hsspetsc.baselines import KFAC, nystrom, rsvd
from hsspetsc.mlp import MLP, GaussNewton, load

HERE = os.path.dirname(os.path.abspath(__file__))


def adam_train(model, X, Y, steps=200, lr=1e-2):
    th = model.params
    m1 = np.zeros_like(th)
    m2 = np.zeros_like(th)
    for t in range(1, steps + 1):
        _, g = model.loss_grad(X, Y, th)
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        th = th - lr * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)
    model.params = th
    return model.loss(X, Y)


def sampled_rows(G, rows):
    """Exact rows of H (= columns, H symmetric) by matrix-free products."""
    E = np.zeros((G.n, rows.size))
    E[rows, np.arange(rows.size)] = 1.0
    return G.matmat(E)


def eps_fro(approx, E, exact_cols):
    got = approx @ E
    return float(np.linalg.norm(got - exact_cols) / np.linalg.norm(exact_cols))


NETS = {
    "a": ("digits", 500, [64, 32, 64]),
    "b": ("digits", 1797, [64, 128, 64]),
    "c": ("fashion-mnist", 1000, [784, 32, 784]),
}
# compress_sketch settings per net and budget (samples ~ the %K it buys)
SKETCH = {
    "a": {"low": dict(samples=200, tol=1e-3, leaf_size=64),
          "high": dict(samples=1200, tol=1e-4, leaf_size=64)},
    "b": {"low": dict(samples=300, tol=1e-3, leaf_size=128),
          "high": dict(samples=1600, tol=1e-4, leaf_size=128)},
    "c": {"low": dict(samples=400, tol=1e-3, leaf_size=128),
          "high": dict(samples=3200, tol=1e-4, leaf_size=128)},
}
ENTRIES = dict(tol=1e-2, max_rank=64, neighbors=8, leaf_size=128)   # compress, low


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="net (a) only")
    ap.add_argument("--out", default=os.path.join(HERE, "bench_gn_compare.json"))
    args = ap.parse_args()
    rows_out = []
    print(f"{'net':<4} {'N':>6} {'budget':<5} {'method':<11} {'%K':>7} {'eps_F':>9} "
          f"{'time s':>7}  notes", flush=True)
    spectrum = None
    for key in (["a"] if args.quick else ["a", "b", "c"]):
        data, n, widths = NETS[key]
        X, _ = load(data, n)
        model = MLP(widths, activation="tanh", loss="mse", seed=0)
        t = time.perf_counter()
        final_loss = adam_train(model, X, X)
        t_train = time.perf_counter() - t
        G0 = GaussNewton(model, X, X)
        delta = 1e-10 * float(G0.diagonal().mean())
        G = GaussNewton(model, X, X, damping=delta)
        N = G.n
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(N, 200, replace=False))
        E = np.zeros((N, rows.size))
        E[rows, np.arange(rows.size)] = 1.0
        exact = G.matmat(E)
        print(f"# net ({key}) {widths} on {n} {data} images: N = {N}, loss after Adam "
              f"{final_loss:.4f} ({t_train:.1f} s)", flush=True)
        kf = KFAC(G)
        e_k = eps_fro(kf, E, exact)
        runs = [("low", "HSS-entries", ENTRIES)] + [(b, "HSS", p) for b, p in
                                                     SKETCH[key].items()]
        for bname, method, params in runs:
            t = time.perf_counter()
            if method == "HSS":
                H = hsspetsc.compress_sketch(G, probes=0, order=G.neuron_order(), **params)
            else:
                H = hsspetsc.compress(G, **params)
            t_h = time.perf_counter() - t
            s = H.stats()
            pk = s["entries_fraction"]
            e_h = eps_fro(H, E, exact)
            res = [(method, pk, e_h, t_h, f"rank {s['rank_mean']:.0f}/{s['rank_max']}, "
                    f"{len(s['truncated_nodes'])} capped")]
            if method == "HSS":
                cols = pk * N
                q, p = 1, 10
                r = int(max(1, min(N - p, cols / (2 + q) - p, 4000)))   # cap: time
                t = time.perf_counter()
                A = rsvd(G, N, r, oversample=p, power_iters=q, seed=0)
                res.append(("RSVD", A.work_fraction, eps_fro(A, E, exact),
                            time.perf_counter() - t, f"rank {r}"))
                r = int(max(1, min(N - p, cols - p, 4000)))
                t = time.perf_counter()
                A = nystrom(G, N, r, oversample=p, seed=0)
                res.append(("Nystrom", A.work_fraction, eps_fro(A, E, exact),
                            time.perf_counter() - t, f"rank {r}"))
                res.append(("KFAC", kf.work_fraction, e_k, 0.0, "fixed"))
            for method_, w, e, tt, note in res:
                rows_out.append({"net": key, "widths": widths, "data": data, "samples": n,
                                 "N": N, "budget": bname, "method": method_,
                                 "percent_K": 100 * w, "eps_F": e, "time_s": tt,
                                 "note": note,
                                 "params": params if method_.startswith("HSS") else None})
                print(f"({key}) {N:>6} {bname:<5} {method_:<11} {100 * w:>6.2f}% {e:>9.2e} "
                      f"{tt:>7.2f}  {note}", flush=True)
            if key == "a" and bname == "high":
                Hd = G.matmat(np.eye(N))
                Ht = H.to_dense()
                spectrum = (np.linalg.eigvalsh(0.5 * (Hd + Hd.T))[::-1][:200],
                            np.linalg.eigvalsh(0.5 * (Ht + Ht.T))[::-1][:200],
                            np.linalg.eigvalsh(0.5 * (kf.to_dense() + kf.to_dense().T))[::-1][:200])
    write_results(args.out, rows_out)
    if spectrum is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        k = np.arange(1, spectrum[0].size + 1)
        ax.semilogy(k, np.maximum(spectrum[0], 1e-16), "k-", label="H (exact)")
        ax.semilogy(k, np.maximum(spectrum[1], 1e-16), "r--", label="H~ (HSS sketch, high)")
        ax.semilogy(k, np.maximum(spectrum[2], 1e-16), "b:", label="KFAC")
        ax.set_xlabel("index")
        ax.set_ylabel("eigenvalue")
        ax.set_title("Gauss-Newton spectrum, autoencoder 64-32-64 (digits)")
        ax.legend()
        fig.tight_layout()
        png = os.path.join(HERE, "gn_spectrum.png")
        fig.savefig(png, dpi=100)
        print("wrote", png)


if __name__ == "__main__":
    main()
