"""Which curvature makes a good preconditioner for the Newton-CG system? (not a test)

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_pc_curvature.py [--rank 1568]

CG solves (H_cg + lam I) x = -g, where H_cg is the Gauss-Newton matrix of the CG
mini-batch (``--cg-batch`` images) and g the gradient of a larger batch. A
preconditioner M = lam I + V V^T is built from some curvature of the same rank
(``--rank`` columns of V) and applied exactly (Woodbury: a k x k Cholesky), so the
error of an HSS compression is left out and only the choice of curvature is measured:

- ``images outside``: every output of rank/d images drawn from the training set
  outside the CG batch (what newton-hss compresses: ``--curvature-samples`` images);
- ``images inside``: every output of rank/d images of the CG batch;
- ``projections outside``: one Gaussian projection of the outputs of each of rank
  images outside the CG batch, (1/m) sum_i J_i^T w_i w_i^T J_i, an unbiased estimate
  of the population's Gauss-Newton matrix;
- ``projections of the CG batch, r``: r Gaussian projections per CG-batch image, an
  unbiased estimate of H_cg itself (r = 1 and 2);
- ``Nystrom of H_cg``: the randomized Nystrom approximation of H_cg from ``rank``
  products of H_cg (Frangella, Tropp & Udell 2023), the best rank-k curvature one can
  sketch from products of CG's own operator.

With ``--hss R1,R2,..`` it measures instead what newton-hss ``--hss-projections R``
builds: H~ compressed (``compress_sketch``, ``--hss-samples`` products, accurate to
``--hss-tol`` x lambda: shift-aware) from ``GaussNewton(projections=R)`` of the CG
batch, factored with lambda and applied by its solve, beside the exact Woodbury
preconditioner of two projections (the same kind of curvature without HSS's error).

The net is a smaller deep autoencoder (784-100-50-25-50-100-784, logistic, MSE), first
trained by Adam off the mean-image plateau. The count of each is compared with plain
CG in the same run (ratio = its iterations / plain CG's). Writes
bench_pc_curvature.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.linalg as sl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from hsspetsc import compress_sketch  # noqa: E402
from hsspetsc.mlp.data import load  # noqa: E402
from hsspetsc.mlp.gauss_newton import GaussNewton  # noqa: E402
from hsspetsc.mlp.model import MLP, act_deriv  # noqa: E402
from hsspetsc.mlp.optimizers import make_optimizer, minibatch_epochs  # noqa: E402

WIDTHS = [784, 100, 50, 25, 50, 100, 784]


def per_sample_columns(model, theta, X, U):
    """V[:, c] = J(x_c)^T diag(sigma'_out) u_c for each pair (x_c, u_c): (N, m)."""
    zs, acts = model.forward_cache(X, theta)
    layers = model.unpack(theta)
    V = np.empty((model.n_params, X.shape[0]))
    delta = U * act_deriv(model.activations[-1], zs[-1], acts[-1])
    for l in range(model.n_layers - 1, -1, -1):
        w0, b0, e0 = model.layer_slices[l]
        o, i = layers[l][0].shape
        V[w0:b0] = np.einsum("cp,cq->pqc", delta, acts[l]).reshape(o * i, -1)
        V[b0:e0] = delta.T
        if l > 0:
            delta = (delta @ layers[l][0]) * act_deriv(model.activations[l - 1],
                                                       zs[l - 1], acts[l])
    return V


def every_output(model, theta, X):
    """Columns of (1/m) sum_i J_i^T J_i over the m images X (all d outputs)."""
    d = X.shape[1]
    U = np.tile(np.eye(d), (X.shape[0], 1))
    return per_sample_columns(model, theta, np.repeat(X, d, axis=0), U) / np.sqrt(
        X.shape[0])


def projections(model, theta, X, r, seed):
    """Columns of (1/(m r)) sum_i sum_j J_i^T w_ij w_ij^T J_i, w ~ N(0, I_d)."""
    U = np.random.default_rng(seed).standard_normal((X.shape[0] * r, X.shape[1]))
    return per_sample_columns(model, theta, np.repeat(X, r, axis=0), U) / np.sqrt(
        X.shape[0] * r)


def nystrom(H, k, seed):
    """Columns V of the randomized Nystrom approximation V V^T of H (k products)."""
    Om = np.linalg.qr(np.random.default_rng(seed).standard_normal((H.n, k)))[0]
    Y = H.matmat(Om)
    nu = np.sqrt(H.n) * np.finfo(float).eps * np.linalg.norm(Y)
    Y += nu * Om
    C = np.linalg.cholesky(Om.T @ Y)
    B = sl.solve_triangular(C, Y.T, lower=True).T        # Y C^-T
    s2, W = np.linalg.eigh(B.T @ B)                      # B = U S W^T
    keep = s2 > 0
    U = B @ (W[:, keep] / np.sqrt(s2[keep]))
    return U * np.sqrt(np.maximum(s2[keep] - nu, 0.0))


def woodbury(V, lam):
    """x -> (lam I + V V^T)^-1 x."""
    C = np.linalg.cholesky(lam * np.eye(V.shape[1]) + V.T @ V)
    return lambda x: (x - V @ sl.cho_solve((C, True), V.T @ x)) / lam


def pcg(H, lam, b, M, rtol, cap):
    """Iterations of (preconditioned) CG from zero to |r| <= rtol |b|."""
    x, r = np.zeros_like(b), b.copy()
    z = r if M is None else M(r)
    p, rz, stop = z.copy(), r @ z, rtol * np.linalg.norm(b)
    for it in range(1, cap + 1):
        Ap = H.matvec(p) + lam * p
        a = rz / (p @ Ap)
        x += a * p
        r -= a * Ap
        if np.linalg.norm(r) <= stop:
            return it
        z = r if M is None else M(r)
        rz, rz_old = r @ z, rz
        p = z + (rz / rz_old) * p
    return cap


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="training images")
    ap.add_argument("--epochs", type=int, default=30, help="Adam epochs first")
    ap.add_argument("--cg-batch", type=int, default=1000)
    ap.add_argument("--grad-batch", type=int, default=5000)
    ap.add_argument("--rank", type=int, default=1568, help="columns of V")
    ap.add_argument("--lams", default="1e-3,1e-4")
    ap.add_argument("--rtol", type=float, default=1e-2)
    ap.add_argument("--cap", type=int, default=2000)
    ap.add_argument("--hss", default=None, metavar="R1,R2",
                    help="instead: H~ of R projections per CG-batch image, compressed")
    ap.add_argument("--hss-samples", type=int, default=256)
    ap.add_argument("--hss-tol", type=float, default=1.0)
    ap.add_argument("--out", default=None,
                    help="JSON (default bench_pc_curvature.json, with --hss "
                         "bench_pc_curvature_hss.json)")
    a = ap.parse_args()
    if a.out is None:
        a.out = os.path.join(HERE, "bench_pc_curvature" + ("_hss" if a.hss else "")
                             + ".json")
    X, _ = load("fashion-mnist", n=a.n)
    d = X.shape[1]
    model = MLP(WIDTHS, activation="sigmoid", output="sigmoid", loss="mse", seed=0)
    t = time.perf_counter()
    hist = minibatch_epochs(model, X, X, make_optimizer("adam", 3e-3), epochs=a.epochs,
                            batch_size=200, seed=0)
    theta = model.params
    print(f"N = {model.n_params}; Adam {a.epochs} epochs: batch loss "
          f"{hist[-1]['loss']:.4g} ({time.perf_counter() - t:.0f} s)", flush=True)
    perm = np.random.default_rng(1).permutation(a.n)
    cg_idx, outside = perm[:a.cg_batch], perm[a.grad_batch:]
    H = GaussNewton(model, X[cg_idx], X[cg_idx], theta)
    b = -model.loss_grad(X[perm[:a.grad_batch]], X[perm[:a.grad_batch]], theta)[1]
    lams = [float(v) for v in a.lams.split(",")]
    m_img = max(1, a.rank // d)
    r_cg = max(1, a.rank // a.cg_batch)
    cands = [
        (f"every output of {m_img} images outside", lambda: every_output(
            model, theta, X[outside[:m_img]])),
        (f"every output of {m_img} images inside", lambda: every_output(
            model, theta, X[cg_idx[:m_img]])),
        (f"1 projection of {a.rank} images outside", lambda: projections(
            model, theta, X[outside[:a.rank]], 1, 0)),
        (f"{r_cg} projection(s) of the CG batch", lambda: projections(
            model, theta, X[cg_idx], r_cg, 0)),
        (f"{r_cg + 1} projections of the CG batch", lambda: projections(
            model, theta, X[cg_idx], r_cg + 1, 0)),
        (f"Nystrom of H_cg, {a.rank} products", lambda: nystrom(H, a.rank, 0)),
    ]
    if a.hss:
        cands = [cands[4]]          # the exact two-projection preconditioner
    base = {}
    for lam in lams:
        t = time.perf_counter()
        base[lam] = pcg(H, lam, b, None, a.rtol, a.cap)
        print(f"lam {lam:g}: plain CG {base[lam]} iterations "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
    rows = []
    for name, make in cands:
        t = time.perf_counter()
        V = make()
        built = time.perf_counter() - t
        for lam in lams:
            its = pcg(H, lam, b, woodbury(V, lam), a.rtol, a.cap)
            rows.append({"curvature": name, "columns": V.shape[1], "lam": lam,
                         "iterations": its, "plain": base[lam],
                         "ratio": its / base[lam], "build_s": built})
            print(f"  {name:40s} lam {lam:g}: {its:5d} iterations, ratio "
                  f"{its / base[lam]:.2f} (built in {built:.1f} s)", flush=True)
        del V
    for r in ([int(v) for v in a.hss.split(",")] if a.hss else []):
        t = time.perf_counter()
        src = GaussNewton(model, X[cg_idx], X[cg_idx], theta, projections=r)
        src.damping = 1e-10 * float(np.mean(src.diagonal()))
        setup = time.perf_counter() - t
        for lam in lams:
            t = time.perf_counter()
            Ht = compress_sketch(src, samples=a.hss_samples, leaf_size=128,
                                 tol=a.hss_tol, shift=lam, order=src.neuron_order(),
                                 verbose=False)
            F = Ht.factorize(shift=lam)
            built = setup + time.perf_counter() - t
            t = time.perf_counter()
            its = pcg(H, lam, b, F.solve, a.rtol, a.cap)
            name = f"HSS of {r} projections of the CG batch"
            st = Ht.stats()
            rows.append({"curvature": name, "columns": r * a.cg_batch, "lam": lam,
                         "iterations": its, "plain": base[lam], "ratio": its / base[lam],
                         "build_s": built, "cg_s": time.perf_counter() - t,
                         "rank_max": int(st["rank_max"]),
                         "data_bytes": int(st["data_bytes"]),
                         "hss_samples": a.hss_samples, "hss_tol": a.hss_tol})
            print(f"  {name:40s} lam {lam:g}: {its:5d} iterations, ratio "
                  f"{its / base[lam]:.2f} (built in {built:.1f} s, largest rank "
                  f"{st['rank_max']}, {st['data_bytes'] / 1e6:.0f} MB)", flush=True)
            del Ht, F
    out = {"command": "OMP_NUM_THREADS=2 .venv/bin/python bench/bench_pc_curvature.py "
                      + " ".join(sys.argv[1:]),
           "net": WIDTHS, "N": model.n_params, "n": a.n, "cg_batch": a.cg_batch,
           "grad_batch": a.grad_batch, "rtol": a.rtol, "adam_epochs": a.epochs,
           "adam_batch_loss": hist[-1]["loss"],
           "mean_diagonal": float(np.mean(H.diagonal())), "rows": rows}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
