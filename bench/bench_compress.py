"""Construction and matvec benchmark (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_compress.py [--quick]
        [--threads 1,2] [--repeat 3] [--no-gn] [--no-matvec] [--out FILE]

Construction: for each case and thread count (``n_threads=``), the median wall time
of ``--repeat`` compressions, per phase, with the entries evaluated (% of N^2), the
stored MB, eps2 (100 sampled rows, 8 right-hand sides), and whether every stored
buffer is bitwise identical across the thread counts. Baselines, measured in the
same run: the dense 16-column product ``K @ W`` (numpy/OpenBLAS, all threads) for
K02, and one Gauss-Newton product (``GaussNewton.matvec``, one vector, all 2000
images) for the Gauss-Newton cases. Matvec: HSS against the dense product for 1
and 16 right-hand sides (as before). Prints tables, writes JSON next to this file.

On a machine with more cores, ``--threads 1,2,4,8,16 --no-gn --no-matvec`` gives the
thread-scaling table (the Gauss-Newton cases need Debian's Fashion-MNIST).
"""
import argparse
import os
import time
import warnings

import numpy as np
from _results import write_results

import hsspetsc
from hsspetsc.util.timing import median_time

HERE = os.path.dirname(os.path.abspath(__file__))
# construction alone, like for like with the figures: the rank cap of the
# time, no PSD compensation, no error estimate (bench_accuracy.py has the defaults)
KERNEL = {"tol": 1e-5, "max_rank": 256, "spd": False, "probes": 0}


def _gauss3d(N, seed=0):
    X = np.random.default_rng(seed).random((N, 3))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2)


def _gauss6d(N):
    X = np.random.default_rng(0).standard_normal((N, 6))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)


def _gn_demo():
    """The make-demo net at its initial parameters: 784-32-784 autoencoder on 2000
    Fashion-MNIST images; (full GN for products, GN on 128 entry samples)."""
    from hsspetsc.mlp import MLP, GaussNewton
    from hsspetsc.mlp.data import load_fashion_mnist
    X, _ = load_fashion_mnist(n=2000)
    m = MLP([784, 32, 784], activation="tanh", seed=0)
    full = GaussNewton(m, X, X)
    G = GaussNewton(m, X, X, entry_samples=128, seed=0)
    # the trainer's damping for the angle distance: 1e-10 x mean diagonal
    G = GaussNewton(m, X, X, entry_samples=128, seed=0, damping=1e-10 * G.diagonal().mean())
    sub = np.random.default_rng(0).choice(2000, 128, replace=False)
    S = GaussNewton(m, X[sub], X[sub])
    S = GaussNewton(m, X[sub], X[sub], damping=1e-10 * S.diagonal().mean())
    return full, G, S


def construction_cases(quick, gn):
    """(name, N, make source, compress function, kwargs, baseline kind)."""
    cases = []
    if quick:
        cases.append(("K02", 4096, lambda: hsspetsc.gallery.testsuite("K02", 4096),
                      "entries", dict(KERNEL), "dense16"))
        cases.append(("gauss3d", 16384, lambda: _gauss3d(16384), "entries",
                      dict(KERNEL), None))
    else:
        cases.append(("K02", 16384, lambda: hsspetsc.gallery.testsuite("K02", 16384),
                      "entries", dict(KERNEL), "dense16"))
        for N in (32768, 65536):
            cases.append(("gauss3d", N, lambda N=N: _gauss3d(N), "entries",
                          dict(KERNEL), None))
        cases.append(("K05", 16384, lambda: hsspetsc.gallery.testsuite("K05", 16384),
                      "entries", dict(KERNEL), None))
    if gn:
        def get(i):
            if "v" not in _gn_demo_cache:
                _gn_demo_cache["v"] = _gn_demo()
            return _gn_demo_cache["v"][i]
        cases.append(("GN 784-32-784", 50992, lambda: get(1), "entries",
                      {"tol": 1e-2, "max_rank": 64, "neighbors": 8, "spd": False,
                       "probes": 0}, "gn"))
        for s in (100, 200):
            cases.append((f"GN sketch s={s}", 50992, lambda: get(2), "sketch",
                          {"samples": s, "tol": 1e-2, "probes": 8, "order": "neuron",
                           "spd": False},
                          "gn"))
    return cases


def _compress(src, path, kw, nt):
    kw = dict(kw)
    if path == "sketch":
        if kw.get("order") == "neuron":
            kw["order"] = src.neuron_order()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return hsspetsc.compress_sketch(src, n_threads=nt, **kw)
    return hsspetsc.compress(src, n_threads=nt, **kw)


def _buffers(H):
    return [H.tree.perm, H.rank, H.skel_idx, H.skel_pos, H.proj, H.near_data,
            H.far_data, H.sib_data]


def _baseline(kind, src, repeat):
    if kind == "dense16":
        K = src.to_dense(max_n=40000)
        W = np.random.default_rng(1).standard_normal((src.n, 16))
        return "dense K@W (16 cols)", median_time(lambda: K @ W, repeat)
    if kind == "gn":
        full = _gn_demo_cache["v"][0]
        v = np.random.default_rng(1).standard_normal(full.n)
        return "GN matvec (2000 images)", median_time(lambda: full.matvec(v), 2 * repeat + 1)
    return None, None


_gn_demo_cache = {}


def run_construction(args):
    rows = []
    threads = [int(t) for t in args.threads.split(",")]
    hdr = (f"{'case':<16} {'N':>6} {'thr':>3} {'total s':>8} {'tree':>6} {'nbrs':>6} "
           f"{'skel':>6} {'blocks':>6} {'prod':>6} {'t1/t':>5} {'%K':>6} {'MB':>7} "
           f"{'eps2':>8} {'same':>4} {'baseline s':>10} {'x base':>6}")
    print(hdr, flush=True)
    for name, N, make, path, kw, base in construction_cases(args.quick, not args.no_gn):
        src = make()
        bname, tb = _baseline(base, src, args.repeat)
        ref, t_one = None, None
        for nt in threads:
            times, H = [], None
            for _ in range(args.repeat):
                t = time.perf_counter()
                H = _compress(src, path, kw, nt)
                times.append(time.perf_counter() - t)
            total = float(np.median(times))
            if ref is None:
                ref = H
                t_one = total
            same = all(np.array_equal(a, b) for a, b in zip(_buffers(ref), _buffers(H)))
            s = H.stats()
            err = hsspetsc.relative_error(H, src, nrows=100, nrhs=8, exact_max_n=0)["eps2"]
            ph = {k: v for k, v in s["time"].items() if k != "total"}
            row = {"case": name, "N": N, "path": path, "params": {k: v for k, v in kw.items()},
                   "threads": nt, "compress_s": total, "phases_s": ph,
                   "entries_fraction": s["entries_fraction"], "products": s["products"],
                   "stored_MB": s["stored_bytes"] / 1e6, "rank_mean": s["rank_mean"],
                   "rank_max": s["rank_max"], "truncated_nodes": len(s["truncated_nodes"]),
                   "eps2": err, "error_estimate": s.get("error_estimate"),
                   "bitwise_same_as_first": same, "speedup_vs_first": t_one / total,
                   "baseline": bname, "baseline_s": tb,
                   "over_baseline": total / tb if tb else None}
            rows.append(row)
            print(f"{name:<16} {N:>6} {nt:>3} {total:>8.2f} {ph.get('tree', 0):>6.2f} "
                  f"{ph.get('neighbors', 0):>6.2f} {ph.get('skeletons', 0):>6.2f} "
                  f"{ph.get('blocks', 0):>6.2f} {ph.get('products', 0):>6.2f} "
                  f"{t_one / total:>5.2f} {100 * s['entries_fraction']:>6.2f} "
                  f"{row['stored_MB']:>7.1f} {err:>8.1e} {'yes' if same else 'NO':>4} "
                  f"{tb if tb else 0:>10.4f} {row['over_baseline'] or 0:>6.1f}", flush=True)
    return rows


def matvec_cases(quick):
    if quick:
        return [("K02", 4096, {}, lambda: hsspetsc.gallery.testsuite("K02", 4096))]
    out = [("K02", N, {}, (lambda N=N: hsspetsc.gallery.testsuite("K02", N)))
           for N in (4096, 16384)]
    for N in (8192, 16384, 32768):
        out.append(("gauss6d", N, {"max_rank": 128}, (lambda N=N: _gauss6d(N))))
    out.append(("K05", 16384, {}, lambda: hsspetsc.gallery.testsuite("K05", 16384)))
    return out


def run_matvec(args):
    rows = []
    print(f"\n{'matrix':<8} {'N':>6} {'comp s':>7} {'eps2':>8} {'rank':>9} {'MB':>7} "
          f"{'hss1 ms':>8} {'dense1 ms':>9} {'x1':>5} {'hss16 ms':>8} {'dense16 ms':>10} "
          f"{'x16':>5} {'mv1/read':>8}", flush=True)
    for name, N, kw, make in matvec_cases(args.quick):
        src = make()
        params = dict(leaf_size=128, max_rank=256, tol=1e-5, neighbors=32, budget=0.0,
                      spd=False)
        params.update(kw)
        t = time.perf_counter()
        H = hsspetsc.compress(src, **params)
        t_comp = time.perf_counter() - t
        s = H.stats()
        err = hsspetsc.relative_error(H, src, nrows=100, nrhs=8, exact_max_n=0)["eps2"]
        K = src.to_dense(max_n=40000)
        rng = np.random.default_rng(1)
        row = {"matrix": name, "N": N, **params, "compress_s": t_comp, "eps2": err,
               "rank_mean": s["rank_mean"], "rank_max": s["rank_max"],
               "stored_MB": s["stored_bytes"] / 1e6}
        for k in (1, 16):
            W = rng.standard_normal((N, k)) if k > 1 else rng.standard_normal(N)
            row[f"hss_matvec{k}_s"] = median_time(lambda: H @ W, args.repeat_matvec)
            row[f"dense_matvec{k}_s"] = median_time(lambda: K @ W,  # noqa: F821 (del K below)
                                                    max(3, args.repeat_matvec // 3))
            row[f"speedup{k}"] = row[f"dense_matvec{k}_s"] / row[f"hss_matvec{k}_s"]
        del K
        # reading the stored bytes once (a filled buffer of the same size, summed)
        buf = np.random.default_rng(2).random(int(s["stored_bytes"] // 8))
        row["stream_s"] = median_time(buf.sum, 7)
        del buf
        row["matvec1_over_stream"] = row["hss_matvec1_s"] / row["stream_s"]
        rows.append(row)
        print(f"{name:<8} {N:>6} {t_comp:>7.2f} {err:>8.1e} "
              f"{row['rank_mean']:>5.0f}/{row['rank_max']:<3} {row['stored_MB']:>7.1f} "
              f"{1e3 * row['hss_matvec1_s']:>8.2f} {1e3 * row['dense_matvec1_s']:>9.2f} "
              f"{row['speedup1']:>5.1f} {1e3 * row['hss_matvec16_s']:>8.2f} "
              f"{1e3 * row['dense_matvec16_s']:>10.2f} {row['speedup16']:>5.1f} "
              f"{row['matvec1_over_stream']:>8.2f}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma separated")
    ap.add_argument("--repeat", type=int, default=3, help="compressions per timing")
    ap.add_argument("--repeat-matvec", type=int, default=10)
    ap.add_argument("--no-gn", action="store_true", help="skip the Gauss-Newton cases")
    ap.add_argument("--no-matvec", action="store_true", help="skip the matvec table")
    ap.add_argument("--out", default=os.path.join(HERE, "bench_compress.json"))
    args = ap.parse_args()
    construction = run_construction(args)
    matvec = [] if args.no_matvec else run_matvec(args)
    write_results(args.out, matvec, construction=construction)


if __name__ == "__main__":
    main()
