"""Compression and matvec benchmark (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_compress.py [--quick] [--out FILE]

For each case: compression time and its phases, eps2 (100 sampled rows, 8 rhs),
ranks, stored MB, HSS matvec time for 1 and 16 right-hand sides, the dense numpy
(OpenBLAS) product with the same matrix and vectors, and their ratio. Timings are
medians of repeated runs after a warm-up, HSS and dense measured side by side.
Writes a table to stdout and JSON next to this file.
"""
import argparse
import os
import time

import numpy as np

import hsspetsc
from hsspetsc._timing import median_time
from _results import write_results

HERE = os.path.dirname(os.path.abspath(__file__))



def cases(quick):
    rng = np.random.default_rng(0)
    if quick:
        return [("K02", 4096, {}, lambda: hsspetsc.gallery.testsuite("K02", 4096)),
                ("gauss6d", 8192, {"max_rank": 128},
                 lambda: hsspetsc.gallery.kernel_matrix(rng.standard_normal((8192, 6)),
                                                        "gaussian", bandwidth=1.0))]
    out = [("K02", N, {}, (lambda N=N: hsspetsc.gallery.testsuite("K02", N)))
           for N in (4096, 16384)]
    for N in (8192, 16384, 32768):
        X = np.random.default_rng(0).standard_normal((N, 6))
        out.append(("gauss6d", N, {"max_rank": 128, "leaf_size": 128},
                    (lambda X=X: hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0))))
    out.append(("K05", 16384, {}, lambda: hsspetsc.gallery.testsuite("K05", 16384)))
    return out


def run_case(name, N, kw, make, tol, repeat):
    src = make()
    params = dict(leaf_size=128, max_rank=256, tol=tol, neighbors=32, budget=0.0)
    params.update(kw)
    t = time.perf_counter()
    H = hsspetsc.compress(src, **params)
    t_comp = time.perf_counter() - t
    s = H.stats()
    err = hsspetsc.relative_error(H, src, nrows=100, nrhs=8, exact_max_n=0)["eps2"]
    K = src.to_dense(max_n=40000)
    rng = np.random.default_rng(1)
    row = {"matrix": name, "N": N, **params, "compress_s": t_comp,
           "phases_s": {k: v for k, v in s["time"].items() if k != "total"},
           "eps2": err, "rank_mean": s["rank_mean"], "rank_max": s["rank_max"],
           "stored_MB": s["stored_bytes"] / 1e6, "rank_implied_MB": s["rank_implied_bytes"] / 1e6,
           "entries_fraction": s["entries_fraction"], "neighbor_recall": s["neighbor_recall"],
           "truncated_nodes": len(s["truncated_nodes"])}
    for k in (1, 16):
        W = rng.standard_normal((N, k)) if k > 1 else rng.standard_normal(N)
        th = median_time(lambda: H @ W, repeat)
        td = median_time(lambda: K @ W, max(3, repeat // 3))
        row[f"hss_matvec{k}_s"] = th
        row[f"dense_matvec{k}_s"] = td
        row[f"speedup{k}"] = td / th
    # time to read the stored bytes once from memory (a filled buffer of the same
    # size, summed: a sequential read; an untouched buffer would read the zero page)
    buf = np.random.default_rng(2).random(int(s["stored_bytes"] // 8))
    row["stream_s"] = median_time(buf.sum, 7)
    del buf
    row["matvec1_over_stream"] = row["hss_matvec1_s"] / row["stream_s"]

    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(HERE, "bench_compress.json"))
    args = ap.parse_args()
    rows = []
    hdr = (f"{'matrix':<8} {'N':>6} {'comp s':>7} {'tree':>5} {'nbrs':>5} {'skel':>5} "
           f"{'cache':>5} {'eps2':>8} {'rank':>9} {'MB':>7} {'hss1 ms':>8} {'dense1 ms':>9} "
           f"{'x1':>5} {'hss16 ms':>8} {'dense16 ms':>10} {'x16':>5} {'mv1/stream':>10}")
    print(hdr, flush=True)
    for name, N, kw, make in cases(args.quick):
        r = run_case(name, N, kw, make, args.tol, args.repeat)
        rows.append(r)
        p = r["phases_s"]
        print(f"{name:<8} {N:>6} {r['compress_s']:>7.2f} {p['tree']:>5.2f} {p['neighbors']:>5.2f} "
              f"{p['skeletons']:>5.2f} {p['blocks']:>5.2f} {r['eps2']:>8.1e} "
              f"{r['rank_mean']:>5.0f}/{r['rank_max']:<3} {r['stored_MB']:>7.1f} "
              f"{1e3 * r['hss_matvec1_s']:>8.2f} {1e3 * r['dense_matvec1_s']:>9.2f} "
              f"{r['speedup1']:>5.1f} {1e3 * r['hss_matvec16_s']:>8.2f} "
              f"{1e3 * r['dense_matvec16_s']:>10.2f} {r['speedup16']:>5.1f} "
              f"{r['matvec1_over_stream']:>10.2f}", flush=True)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
