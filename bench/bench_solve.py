"""The solve of a preconditioner: one right-hand side, this tree against a checkout
of an earlier commit, side by side (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_solve.py --before DIR [--rounds 20]

``DIR`` is a checkout of the commit to compare with, prepared as for
``bench_structure.py`` (its package is built again as ``hsspetsc_before``). A Krylov
preconditioner applies (shift I + H~)^-1 to one vector per iteration, so the solve
with k = 1 is what CG pays for; k = 16 is shown beside it (a block of right-hand
sides, as kernel ridge regression uses).

Cases: ``gn``, H~ of the Gauss-Newton matrix of the 784-200-30-200-784 autoencoder
(tanh) on 500 Fashion-MNIST images, sketched from 32 products of a 64-image
curvature batch over the neuron order with leaf size 64 (the trainer's preconditioner
at a ninth of the deep autoencoder's size), factored at shift 1e-3 x its mean
diagonal; ``K02`` (test suite, N = 16384, tol 1e-6) and ``gauss3d`` (Gaussian
kernel h = 0.2 on 65536 points of the unit cube, tol 1e-5, max_rank 128), factored at
1e-4 x max diagonal. Both trees build the same matrix; the solves take turns call by
call. Medians in seconds; ratio = after / before. Writes bench_solve.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_structure import _load_before, prepare_before  # noqa: E402

CASES = ("gn", "K02", "gauss3d")


def build(pkg, case):
    """(H~, shift) of a case, made by ``pkg``."""
    if case == "gn":
        X, _ = pkg.mlp.load("fashion-mnist", 500)
        model = pkg.mlp.MLP([784, 200, 30, 200, 784], activation="tanh", seed=0)
        gn = pkg.mlp.GaussNewton(model, X, X, entry_samples=64, seed=0)
        mean_diag = float(np.mean(gn.diagonal()))
        gn.damping = 1e-10 * mean_diag           # as the trainer's H~: zero rows
        H = pkg.compress_sketch(gn, samples=32, leaf_size=64, tol=1e-2,
                                order=gn.neuron_order(), probes=0)
        return H, 1e-3 * mean_diag
    if case == "K02":
        H = pkg.compress(pkg.gallery.testsuite("K02", 16384), tol=1e-6)
    else:
        X = np.random.default_rng(0).random((65536, 3))
        H = pkg.compress(pkg.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2),
                         tol=1e-5, max_rank=128)
    return H, 1e-4 * H.max_diagonal()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=os.path.join(HERE, "bench_solve.json"))
    args = ap.parse_args()
    import hsspetsc
    pkgs = {"after": hsspetsc, "before": _load_before(prepare_before(args.before))}
    rows = []
    for case in args.cases.split(","):
        F, n = {}, None
        for k, pkg in pkgs.items():
            H, shift = build(pkg, case)
            F[k], n = H.factorize(shift), H.n
        st = H.stats()
        row = {"case": case, "N": n, "rank_max": int(st["rank_max"]),
               "leaf_size": int(st["leaf_size"])}
        rng = np.random.default_rng(1)
        for nrhs in (1, 16):
            B = rng.standard_normal((n, nrhs)) if nrhs > 1 else rng.standard_normal(n)
            X = {k: F[k].solve(B) for k in F}         # warm-up, and the answers
            t = {k: [] for k in F}
            for r in range(args.rounds):
                for k in (("before", "after") if r % 2 else ("after", "before")):
                    t0 = time.perf_counter()
                    F[k].solve(B)
                    t[k].append(time.perf_counter() - t0)
            med = {k: float(np.median(v)) for k, v in t.items()}
            diff = float(np.linalg.norm(X["after"] - X["before"])
                         / np.linalg.norm(X["before"]))
            row[f"k{nrhs}"] = {"before": med["before"], "after": med["after"],
                               "ratio": med["after"] / med["before"], "rel_diff": diff}
            print(f"{case:<8} N {n:>7} k {nrhs:>2}: before {med['before']:.4g} s  after "
                  f"{med['after']:.4g} s  ratio {med['after'] / med['before']:.3f}  "
                  f"|x_after - x_before| / |x_before| {diff:.1e}", flush=True)
        rows.append(row)
    with open(args.out, "w") as f:
        before = subprocess.run(["git", "-C", args.before, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        json.dump({"command": " ".join(sys.argv), "before": before or args.before,
                   "rounds": args.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
