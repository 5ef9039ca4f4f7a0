"""Factorization and solve benchmark (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_factor.py [--quick] [--out FILE]

For each family and N: factor time of shift*I + H~ (no compression in it), solve
time for 1 and 16 right-hand sides, the solve error |x - w| / |w| for
x = F.solve(shift w + H~ w), dense Cholesky (scipy cho_factor / cho_solve of
shift*I + K) where N <= 16384, and the growth of factor and solve time when N
doubles. Writes a table and JSON next to this file.

Families: gauss3d (Gaussian, h = 0.2, on N uniform points in the unit cube,
entry-wise; shift = 1e-2 |H~|_2), K05 (test suite, entry-wise, |K|_2 = 1,
shift 1e-3), K02 (test suite, dense; shift 1e-4) and the C++ reference's setting,
a 6-D Gaussian with h = 1 and m = s = 128 at N = 32768.
"""
import argparse
import os
import time

import numpy as np
import scipy.linalg as sla
from _results import write_results

import hsspetsc
from hsspetsc.util.timing import median_time

HERE = os.path.dirname(os.path.abspath(__file__))



def norm_estimate(H, iters=30):
    v = np.ones(H.n) / np.sqrt(H.n)
    lam = 0.0
    for _ in range(iters):
        w = H @ v
        lam = float(v @ w)
        v = w / np.linalg.norm(w)
    return lam


def families(quick):
    def gauss3d(N):
        X = np.random.default_rng(0).random((N, 3))
        return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2)

    def gauss6d(N):
        X = np.random.default_rng(0).standard_normal((N, 6))
        return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)

    g3 = (4096, 8192) if quick else (4096, 8192, 16384, 32768, 65536)
    k5 = (4096,) if quick else (4096, 8192, 16384)
    k2 = (4096,) if quick else (4096, 16384)
    out = [("gauss3d", N, gauss3d, {"tol": 1e-5}, ("rel", 1e-2)) for N in g3]
    out += [("K05", N, lambda N: hsspetsc.gallery.testsuite("K05", N), {"tol": 1e-6},
             ("abs", 1e-3)) for N in k5]
    out += [("K02", N, lambda N: hsspetsc.gallery.testsuite("K02", N), {"tol": 1e-6},
             ("abs", 1e-4)) for N in k2]
    if not quick:
        out.append(("gauss6d-ref", 32768, gauss6d, {"tol": 1e-5, "max_rank": 128},
                    ("spd", None)))
    return out


def run(name, N, make, ckw, shift_rule, repeat):
    src = make(N)
    params = dict(leaf_size=128, max_rank=256, neighbors=32)
    params.update(ckw)
    t = time.perf_counter()
    H = hsspetsc.compress(src, **params)
    t_comp = time.perf_counter() - t
    kind, val = shift_rule
    if kind == "abs":
        shift = val
    elif kind == "rel":
        shift = val * norm_estimate(H)
    else:   # smallest power of ten times |H~| for which shift I + H~ is SPD
        nrm = norm_estimate(H)
        for rel in (1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0):
            try:
                H.factorize(shift=rel * nrm)
                shift = rel * nrm
                break
            except hsspetsc.FactorizationError:
                continue
    H.factorize(shift=shift)            # builds the shift-independent layout once
    F = None

    def fac():
        nonlocal F
        F = H.factorize(shift=shift)
    t_fac = median_time(fac, repeat)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((N, 16))
    b = shift * w + H @ w
    t_s1 = median_time(lambda: F.solve(b[:, 0]), repeat)
    t_s16 = median_time(lambda: F.solve(b), repeat)
    x = F.solve(b)
    err = float(np.linalg.norm(x - w) / np.linalg.norm(w))
    row = {"matrix": name, "N": N, **params, "shift": shift, "compress_s": t_comp,
           "eps2": hsspetsc.relative_error(H, src, exact_max_n=0)["eps2"],
           "rank_mean": H.stats()["rank_mean"], "factor_s": t_fac, "solve1_s": t_s1,
           "solve16_s": t_s16, "solve_err": err, "factor_MB": F.nbytes / 1e6}
    if N <= 16384:
        K = src.to_dense(max_n=16384)
        K[np.diag_indices(N)] += shift
        t = time.perf_counter()
        C = sla.cho_factor(K, overwrite_a=True, check_finite=False)
        row["dense_factor_s"] = time.perf_counter() - t
        row["dense_solve1_s"] = median_time(lambda: sla.cho_solve(C, b[:, 0],
                                                                  check_finite=False), 3)
        del K, C
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "bench_factor.json"))
    args = ap.parse_args()
    print(f"{'matrix':<12} {'N':>6} {'shift':>8} {'eps2':>8} {'factor s':>9} {'x2N':>5} "
          f"{'solve1 ms':>9} {'x2N':>5} {'solve16 ms':>10} {'solve err':>9} "
          f"{'dense fac s':>11} {'ratio':>7} {'dense sol ms':>12}", flush=True)
    rows, prev = [], {}
    for name, N, make, ckw, rule in families(args.quick):
        r = run(name, N, make, ckw, rule, args.repeat)
        p = prev.get(name)
        if p is not None and r["N"] == 2 * p["N"]:
            r["factor_growth"] = r["factor_s"] / p["factor_s"]
            r["solve_growth"] = r["solve1_s"] / p["solve1_s"]
        prev[name] = r
        rows.append(r)
        fg = f"{r['factor_growth']:.2f}" if "factor_growth" in r else "-"
        sg = f"{r['solve_growth']:.2f}" if "solve_growth" in r else "-"
        dfs = f"{r['dense_factor_s']:.2f}" if "dense_factor_s" in r else "-"
        ratio = f"{r['dense_factor_s'] / r['factor_s']:.0f}x" if "dense_factor_s" in r else "-"
        dss = f"{1e3 * r['dense_solve1_s']:.1f}" if "dense_solve1_s" in r else "-"
        print(f"{name:<12} {N:>6} {r['shift']:>8.1e} {r['eps2']:>8.1e} {r['factor_s']:>9.3f} "
              f"{fg:>5} {1e3 * r['solve1_s']:>9.2f} {sg:>5} {1e3 * r['solve16_s']:>10.2f} "
              f"{r['solve_err']:>9.1e} {dfs:>11} {ratio:>7} {dss:>12}", flush=True)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
