"""Kernel ridge regression on Fashion-MNIST: hsspetsc against dense Cholesky,
scikit-learn and Nystrom models, in one run (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_krr.py [--n 5000,20000,60000]

Gaussian kernel (h = 5, pixels in [0, 1], 784-D), lam = 0.1, one-hot targets of
the first N training images; test accuracy on the first 2000 test images (argmax of
the 10 outputs). Per N and method: fit time (the solve; K(test, train) for the
prediction is formed once and not counted), peak memory of the fit (tracemalloc:
numpy and Python allocations), test accuracy, and the relative residual of the KRR
system |Y - (lam I + K) x| / |Y| on 256 exact rows of K (not defined for a Nystrom
model, which solves another system). Methods:

- dense: K formed, scipy cho_factor / cho_solve (where 8 N^2 bytes fit in half the
  machine);
- sklearn: scikit-learn's KernelRidge (rbf, gamma = 1 / (2 h^2)) for N <= 10000;
- nystrom-M: the FALKON-kind model with M uniform random centres,
  (C^T C + lam W) b = C^T Y, C = K(X, centres), W = K(centres, centres);
- hss-c: ``hsspetsc.solve(method="hss", precond_tol=c)``, the direct solve of
  lam I + H~ with |K - H~|_2 ~ c lam (shift-aware);
- pcg-c: ``hsspetsc.solve(method="pcg", precond_tol=c, tol=1e-3)``, CG on the
  exact K (formed) preconditioned by the HSS factorization (N where K fits).

Writes bench/bench_krr.json and bench/krr.png (accuracy against fit time).
"""
import argparse
import os
import time
import tracemalloc
import warnings

import numpy as np
import scipy.linalg
from _results import write_results

import hsspetsc
from hsspetsc.krylov import residual_on_rows

HERE = os.path.dirname(os.path.abspath(__file__))
H_BW, LAM, N_TEST = 5.0, 0.1, 2000


def load(n):
    from hsspetsc.mlp.data import load_fashion_mnist
    X, y = load_fashion_mnist("train", n)
    Xt, yt = load_fashion_mnist("test", N_TEST)
    return (X.reshape(n, -1).astype(np.float64), y,
            Xt.reshape(N_TEST, -1).astype(np.float64), yt)


def dense_fit(src, Y):
    A = src.to_dense(max_n=src.n)        # the symmetric GEMM path: half the flops
    A[np.diag_indices(src.n)] += LAM
    # A.T: the Fortran-ordered view LAPACK factors in place, no copy (A symmetric)
    cf = scipy.linalg.cho_factor(A.T, lower=True, overwrite_a=True, check_finite=False)
    return scipy.linalg.cho_solve(cf, Y, check_finite=False), {}


def sklearn_fit(X, Y):
    from sklearn.kernel_ridge import KernelRidge
    est = KernelRidge(kernel="rbf", gamma=1 / (2 * H_BW ** 2), alpha=LAM).fit(X, Y)
    return est.dual_coef_, {}


def nystrom_fit(src, Y, m, seed=0):
    n = src.n
    centres = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
    C = src.entries(np.arange(n), centres)
    W = src.entries(centres, centres)
    A = C.T @ C + LAM * W
    A[np.diag_indices(m)] += 1e-10 * float(np.max(np.diag(A)))
    b = scipy.linalg.solve(A, C.T @ Y, assume_a="pos")
    return (centres, b), {}


def solve_extra(info):
    """What a hsspetsc.solve run reports; ``solved_by`` says "dense" where the work
    cap refused the compression and the solve fell back to the dense matrix."""
    out = {"times": info["times"], "solved_by": info["method"],
           "iterations": info["iterations"]}
    st = info["hss_stats"]
    if st is not None:
        out.update(shift_error=st["shift_error"], stored_mb=st["stored_bytes"] / 2 ** 20,
                   entries_fraction=st["entries_fraction"])
    return out


def run_method(name, fn):
    tracemalloc.start()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out, extra = fn()
    T = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, extra, T, peak


def bench_n(n, args):
    X, y, Xt, yt = load(n)
    Y = np.eye(10)[y]
    src = hsspetsc.KernelSource(X, "gaussian", H_BW)
    both = hsspetsc.KernelSource(np.vstack([X, Xt]), "gaussian", H_BW)
    t = time.perf_counter()
    Kt = both.entries(np.arange(n, n + N_TEST), np.arange(n))
    print(f"N = {n}: K(test, train) in {time.perf_counter() - t:.1f} s (not counted)",
          flush=True)
    rows = np.sort(np.random.default_rng(1).choice(n, 256, replace=False))
    mem_half = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    methods = []
    if 8.0 * n ** 2 <= mem_half:
        methods.append(("dense", lambda: dense_fit(src, Y)))
    if n <= 10000:
        methods.append(("sklearn", lambda: sklearn_fit(X, Y)))
    for m in args.centres:
        if m < n:
            methods.append((f"nystrom-{m}", lambda m=m: nystrom_fit(src, Y, m)))
    # past 30000 only the cheapest share: the smaller ones take beyond 3 minutes there
    for c in (args.shares if n <= 30000 else args.shares[-1:]):
        def hss(c=c):
            x, info = hsspetsc.solve(src, Y, LAM, method="hss", precond_tol=c,
                                     check_rows=0)
            return x, solve_extra(info)
        methods.append((f"hss-{c:g}", hss))
    if 8.0 * n ** 2 <= mem_half:
        for c in args.pcg_shares:
            def pcg(c=c):
                x, info = hsspetsc.solve(src, Y, LAM, method="pcg", precond_tol=c,
                                         tol=1e-3)
                return x, solve_extra(info)
            methods.append((f"pcg-{c:g}", pcg))
    rows_out = []
    for name, fn in methods:
        out, extra, T, peak = run_method(name, fn)
        if name.startswith("nystrom"):
            centres, b = out
            pred = Kt[:, centres] @ b
            res = None
        else:
            pred = Kt @ out
            res = residual_on_rows(src, LAM, out, Y, rows)
        acc = float(np.mean(np.argmax(pred, axis=1) == yt))
        r = {"N": n, "method": name, "fit_s": T, "peak_mb": peak / 2 ** 20,
             "accuracy": acc, "residual": res, **extra}
        rows_out.append(r)
        print(f"  {name:<14} {T:8.2f} s  peak {peak / 2 ** 20:8.0f} MB  acc {acc:.4f}  "
              f"residual {'-' if res is None else f'{res:.3g}'}"
              + (f"  iterations {extra['iterations']}" if extra.get("iterations") else "")
              + (f"  (fell back to {extra['solved_by']})"
                 if extra.get("solved_by") == "dense" else ""),
              flush=True)
    dense = next((r for r in rows_out if r["method"] == "dense"), None)
    for r in rows_out:
        r["over_dense"] = r["fit_s"] / dense["fit_s"] if dense else None
        r["acc_minus_dense"] = (r["accuracy"] - dense["accuracy"]) if dense else None
    return rows_out


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = sorted({r["N"] for r in rows})
    fig, axes = plt.subplots(1, len(ns), figsize=(5 * len(ns), 4), squeeze=False)
    style = {"dense": ("k", "s"), "sklearn": ("grey", "D"), "nystrom": ("tab:orange", "o"),
             "hss": ("tab:blue", "^"), "pcg": ("tab:green", "v")}
    for ax, n in zip(axes[0], ns):
        for kind, (col, mk) in style.items():
            pts = [r for r in rows if r["N"] == n and r["method"].split("-")[0] == kind]
            if not pts:
                continue
            pts.sort(key=lambda r: r["fit_s"])
            ax.plot([r["fit_s"] for r in pts], [r["accuracy"] for r in pts], marker=mk,
                    color=col, label=kind, linestyle="-" if len(pts) > 1 else "none")
            for r in pts:
                if "-" in r["method"]:
                    ax.annotate(r["method"].split("-")[1], (r["fit_s"], r["accuracy"]),
                                fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("fit time [s]")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"Fashion-MNIST KRR, N = {n}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="5000,20000,60000")
    ap.add_argument("--centres", default="1000,2000,4000,8000")
    ap.add_argument("--shares", default="30,100", help="precond_tol of the direct runs")
    ap.add_argument("--pcg-shares", default="100")
    ap.add_argument("--out", default=os.path.join(HERE, "bench_krr.json"))
    args = ap.parse_args()
    args.centres = [int(v) for v in args.centres.split(",") if v]
    args.shares = [float(v) for v in args.shares.split(",") if v]
    args.pcg_shares = [float(v) for v in args.pcg_shares.split(",") if v]
    rows = []
    for n in [int(v) for v in args.n.split(",")]:
        rows += bench_n(n, args)
        write_results(args.out, rows, h=H_BW, lam=LAM, n_test=N_TEST)
    plot(rows, os.path.join(HERE, "krr.png"))


if __name__ == "__main__":
    main()
