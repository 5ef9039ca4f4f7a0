"""Accuracy against time, tol 1e-2 ... 1e-8 (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_accuracy.py [--quick] [--out FILE]

For each matrix and tol: compression time (median of 3 when under 3 s; default
parameters: adaptive ranks,
PSD compensation, 32-row error estimate, all included), eps2 (100 sampled rows, 8
right-hand sides), the measured relative Frobenius error from 256 fresh exact rows
beside the estimate compress stored, the largest rank, stored MB, and whether a
warning was raised. One more point per matrix: ``tune`` at tol 1e-5 plus the
compression it picks (time of both). Writes JSON and bench/accuracy.png (error
against time, one panel per matrix, the tuned point marked).
"""
import argparse
import os
import time
import warnings

import numpy as np
from _results import write_results

import hsspetsc

HERE = os.path.dirname(os.path.abspath(__file__))
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)


def _sphere(n, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1)[:, None]


def _fashion(n):
    from hsspetsc.mlp.data import load_fashion_mnist
    X, _ = load_fashion_mnist(n=n)
    rng = np.random.default_rng(0)
    i, j = rng.integers(n, size=(2, 4000))
    h = float(np.median(np.linalg.norm(X[i] - X[j], axis=1)))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=h), h


def cases(quick):
    if quick:
        return [("K02", 4096, lambda: hsspetsc.gallery.testsuite("K02", 4096), TOLS),
                ("gauss3d", 8192, lambda: hsspetsc.gallery.kernel_matrix(
                    np.random.default_rng(0).random((8192, 3)), "gaussian", bandwidth=0.2),
                 TOLS)]
    return [
        ("K02", 16384, lambda: hsspetsc.gallery.testsuite("K02", 16384), TOLS + (1e-9,)),
        ("gauss3d", 65536, lambda: hsspetsc.gallery.kernel_matrix(
            np.random.default_rng(0).random((65536, 3)), "gaussian", bandwidth=0.2), TOLS),
        ("laplace-sphere", 16384, lambda: hsspetsc.gallery.kernel_matrix(
            _sphere(16384), "laplace", bandwidth=0.3), TOLS),
        # 784-D data: ranks near full beyond 1e-4 (minutes per point), so 3 tols
        ("fashion-gauss", 8192, lambda: _fashion(8192)[0], (1e-2, 1e-3, 1e-4)),
    ]


def measured_fro(H, src, nrows=256, seed=99):
    """|K(S,:) - K~(S,:)|_F / |K(S,:)|_F on fresh uniform rows (exact from entries)."""
    rows = np.sort(np.random.default_rng(seed).choice(H.n, min(H.n, nrows), replace=False))
    exact = src.entries(rows, np.arange(H.n))
    E = np.zeros((H.n, rows.size))
    E[rows, np.arange(rows.size)] = 1.0
    approx = H.matvec(E).T
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def point(src, run):
    """One compression; when it takes under 3 s, the median time of three."""
    times = []
    while not times or (len(times) < 3 and times[0] < 3.0):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", RuntimeWarning)
            t = time.perf_counter()
            H = run()
            times.append(time.perf_counter() - t)
    dt = float(np.median(times))
    s = H.stats()
    return H, {"time_s": dt, "eps2": hsspetsc.relative_error(H, src, nrows=100, nrhs=8,
                                                             exact_max_n=0)["eps2"],
               "fro_measured": measured_fro(H, src), "fro_estimate": s["error_estimate"],
               "rank_max": s["rank_max"], "rank_mean": s["rank_mean"],
               "stored_MB": s["stored_bytes"] / 1e6, "compensation": s["compensation"],
               "truncated_nodes": len(s["truncated_nodes"]),
               "warning": str(w[0].message)[:200] if w else None,
               "phases_s": {k: v for k, v in s["time"].items() if k != "total"}}


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r["matrix"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        rs = [r for r in rows if r["matrix"] == name and not r["tuned"]]
        t = [r["time_s"] for r in rs]
        ax.loglog(t, [r["eps2"] for r in rs], "o-", label="ε₂ (rows)")
        ax.loglog(t, [r["fro_measured"] for r in rs], "s-", label="ε_F measured")
        ax.loglog(t, [r["fro_estimate"] for r in rs], "x--", label="ε_F estimate")
        ax.loglog(t, [r["tol"] for r in rs], ":", color="gray", label="tol")
        for r in rs:
            ax.annotate(f"{r['tol']:.0e}", (r["time_s"], r["eps2"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        tu = [r for r in rows if r["matrix"] == name and r["tuned"]]
        for r in tu:
            ax.loglog([r["time_s"]], [r["eps2"]], "*", ms=14, color="C3",
                      label=f"tune + compress, tol {r['tol']:.0e}")
        ax.set_title(f"{name} (N = {rs[0]['N']})")
        ax.set_xlabel("compression time, s (2 cores)")
        ax.set_ylabel("relative error")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "bench_accuracy.json"))
    ap.add_argument("--png", default=os.path.join(HERE, "accuracy.png"))
    args = ap.parse_args()
    rows = []
    print(f"{'matrix':<15} {'N':>6} {'tol':>7} {'time s':>7} {'eps2':>8} {'eF meas':>8} "
          f"{'eF est':>8} {'rank max':>8} {'MB':>7} {'comp':>8} warn", flush=True)
    for name, N, make, tols in cases(args.quick):
        src = make()
        runs = [(tol, False, (lambda tol=tol: hsspetsc.compress(src, tol=tol)))
                for tol in tols]
        t_tune = max(min(tols), 1e-5)
        runs.append((t_tune, True,
                     lambda: hsspetsc.compress(src, **hsspetsc.tune(src, t_tune))))
        for tol, tuned, run in runs:
            _, r = point(src, run)
            r.update(matrix=name, N=N, tol=tol, tuned=tuned)
            rows.append(r)
            print(f"{name + (' (tuned)' if tuned else ''):<15} {N:>6} {tol:>7.0e} "
                  f"{r['time_s']:>7.2f} {r['eps2']:>8.1e} {r['fro_measured']:>8.1e} "
                  f"{r['fro_estimate']:>8.1e} {r['rank_max']:>8} {r['stored_MB']:>7.1f} "
                  f"{r['compensation']:>8.1e} {'yes' if r['warning'] else ''}", flush=True)
    write_results(args.out, rows)
    plot(rows, args.png)


if __name__ == "__main__":
    main()
