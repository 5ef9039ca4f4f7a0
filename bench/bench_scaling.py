"""Strong and weak scaling of the memory-distributed HSS matrix (not a test).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_scaling.py [--quick]
        [--ranks 1,2,4,8] [--n 65536] [--weak-n 16384] [--largest 2097152]

For each rank count P (``mpiexec -n P``, one thread per rank) the gauss3d matrix
(Gaussian kernel, h = 0.2, N uniform points in the unit cube) is compressed with
``compress(..., comm=COMM_WORLD)`` and timed: compression (and its phases),
matvec (1 and 16 right-hand sides), factorization and solve; memory per rank
(stored bytes of H~ and of the factorization, and the peak resident size of the
process), and the bytes and messages one matvec exchanges per rank against the
model 2 r nrhs log2 P doubles (r: the mean rank of the skeletons swapped). Strong
scaling: N fixed; weak: N = weak_n * P. The P = 1 run also times the serial
HSSMatrix (the baseline, same parameters). ``--largest N`` compresses gauss3d of
N = 2^19, 2^20, ... up to N on P = 2 ranks and reports time and memory. Writes
bench_scaling.json and scaling.png next to this file.

On a 2-core machine times above P = 2 are oversubscribed and mean little;
memory and message counts do.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS = dict(leaf_size=128, tol=1e-5, max_rank=128, probes=0)
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OMPI_MCA_rmaps_base_oversubscribe": "1",
       "OMPI_MCA_hwloc_base_binding_policy": "none", "OMP_NUM_THREADS": "1"}


def _source(N):
    import hsspetsc
    X = np.random.default_rng(0).random((N, 3))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2)


def _timed(comm, f, repeat):
    """Median over ``repeat`` calls (after a warm-up) of the slowest rank's time."""
    f()
    ts = []
    for _ in range(repeat):
        comm.Barrier()
        t = time.perf_counter()
        f()
        ts.append(comm.allreduce(time.perf_counter() - t, op=_max()))
    return float(np.median(ts))


def _max():
    from mpi4py import MPI
    return MPI.MAX


def worker(args):
    """One rank count: everything measured, rank 0 writes ``args.out``."""
    import warnings

    from mpi4py import MPI

    import hsspetsc
    comm = MPI.COMM_WORLD
    P, me = comm.Get_size(), comm.Get_rank()
    src = _source(args.n)
    warnings.simplefilter("ignore", RuntimeWarning)
    comm.Barrier()
    t = time.perf_counter()
    D = hsspetsc.compress(src, comm=comm, **PARAMS)
    t_comp = comm.allreduce(time.perf_counter() - t, op=MPI.MAX)
    phases = {k: comm.allreduce(v, op=MPI.MAX) for k, v in D.stats()["time"].items()}
    row = {"P": P, "N": args.n, "compress_s": t_comp, "phases_s": phases}
    if args.quick_build:
        row.update(_memory(D, None, comm))
        if me == 0:
            json.dump(row, open(args.out, "w"))
        return
    rng = np.random.default_rng(1)
    W1 = rng.standard_normal(args.n)[D.local_indices]
    W16 = rng.standard_normal((args.n, 16))[D.local_indices]
    row["matvec1_s"] = _timed(comm, lambda: D.matvec(W1), 11)
    row["matvec16_s"] = _timed(comm, lambda: D.matvec(W16), 3)
    shift = 1e-2 * D.max_diagonal()
    row["factor_s"] = _timed(comm, lambda: D.factorize(shift), 2)
    F = D.factorize(shift)
    row["solve1_s"] = _timed(comm, lambda: F.solve(W1), 11)
    # messages of one matvec (1 right-hand side), per rank
    before = dict(D.stats()["comm"].get("matvec", {}))
    D.matvec(W1)
    s = D.stats()
    after = s["comm"]["matvec"]
    sent = after["bytes_sent"] - before.get("bytes_sent", 0)
    recv = after["bytes_received"] - before.get("bytes_received", 0)
    msgs = (after["messages_sent"] + after["messages_received"]
            - before.get("messages_sent", 0) - before.get("messages_received", 0))
    swapped = [int(D.rank[e[1]]) for e in D.own.path] + [int(D.rank[e[2]]) for e in D.own.path]
    r_mean = float(np.mean(swapped)) if swapped else 0.0
    levels = len(D.own.path)
    per = comm.gather({"bytes": sent + recv, "messages": msgs, "r_mean": r_mean,
                       "levels": levels,
                       "model": 2 * r_mean * 1 * levels * 8}, root=0)
    row.update(_memory(D, F, comm))
    if P == 1:
        # the serial HSSMatrix, same parameters: the baseline
        t = time.perf_counter()
        H = hsspetsc.compress(src, **PARAMS)
        row["serial_compress_s"] = time.perf_counter() - t
        w = rng.standard_normal(args.n)
        from hsspetsc.util.timing import median_time
        row["serial_matvec1_s"] = median_time(lambda: H @ w, 5)
        row["serial_factor_s"] = median_time(lambda: H.factorize(shift), 2)
        Fs = H.factorize(shift)
        row["serial_solve1_s"] = median_time(lambda: Fs.solve(w), 5)
        row["serial_stored_bytes"] = H.stats()["stored_bytes"]
        row["equal_to_serial"] = float(np.abs(D.matvec(w[D.local_indices])
                                              - (H @ w)[D.local_indices]).max()
                                       / np.abs(H @ w).max())
    if me == 0:
        row["comm_per_rank"] = per
        row["rank_max"] = int(D.rank.max())
        json.dump(row, open(args.out, "w"))


def _memory(D, F, comm):
    s = D.stats()
    fb = comm.allgather(0 if F is None else F.nbytes)
    rss = comm.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"stored_bytes_per_rank": s["per_rank_stored_bytes"],
            "stored_bytes_max": s["max_stored_bytes"],
            "stored_bytes_total": s["total_stored_bytes"],
            "factor_bytes_max": int(max(fb)), "peak_rss_max": int(max(rss))}


def run_ranks(P, n, quick_build=False, timeout=3000):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = ["mpiexec", "--oversubscribe", "-n", str(P), sys.executable,
           os.path.abspath(__file__), "--worker", "--n", str(n), "--out", out]
    if quick_build:
        cmd.append("--quick-build")
    env = dict(os.environ, **ENV)
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        print(res.stdout[-2000:], res.stderr[-4000:])
        raise RuntimeError(f"mpiexec -n {P} failed (N = {n})")
    row = json.load(open(out))
    os.unlink(out)
    row["wall_s"] = time.perf_counter() - t
    return row


def table(rows, title):
    print(f"\n{title}")
    hdr = (f"{'P':>3} {'N':>8} {'compress s':>10} {'matvec s':>9} {'mv16 s':>8} "
           f"{'factor s':>9} {'solve s':>8} {'MB/rank':>8} {'fact MB':>8} "
           f"{'RSS MB':>7} {'B/matvec':>9} {'model B':>8} {'msgs':>5}")
    print(hdr)
    for r in rows:
        cm = r.get("comm_per_rank") or [{}]
        b = max(c.get("bytes", 0) for c in cm)
        mo = max(c.get("model", 0) for c in cm)
        ms = max(c.get("messages", 0) for c in cm)
        print(f"{r['P']:>3} {r['N']:>8} {r['compress_s']:>10.2f} "
              f"{r.get('matvec1_s', float('nan')):>9.4f} "
              f"{r.get('matvec16_s', float('nan')):>8.4f} "
              f"{r.get('factor_s', float('nan')):>9.3f} {r.get('solve1_s', float('nan')):>8.4f} "
              f"{r['stored_bytes_max'] / 1e6:>8.1f} {r['factor_bytes_max'] / 1e6:>8.1f} "
              f"{r['peak_rss_max'] / 1e6:>7.0f} {b:>9.0f} {mo:>8.0f} {ms:>5}")


def plot(strong, weak, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.2))
    P = [r["P"] for r in strong]
    for key, lab in (("compress_s", "compression"), ("matvec1_s", "matvec"),
                     ("factor_s", "factorization"), ("solve1_s", "solve")):
        t = [r[key] for r in strong]
        ax[0].plot(P, [t[0] / x for x in t], "o-", label=lab)
    ax[0].plot(P, P, "k:", label="ideal")
    ax[0].axvspan(2.5, max(P) + 0.5, color="0.92")
    ax[0].text(max(P) * 0.6, 1.1, "oversubscribed\n(2 cores)", fontsize=8, ha="center")
    ax[0].set(xlabel="ranks P", ylabel="speed-up over P = 1",
              title=f"strong scaling, N = {strong[0]['N']}")
    ax[0].legend(fontsize=8)
    ax[1].plot(P, [r["stored_bytes_max"] / 1e6 for r in strong], "o-", label="H~ per rank")
    ax[1].plot(P, [strong[0]["stored_bytes_max"] / 1e6 / p for p in P], "k:", label="1/P")
    ax[1].plot(P, [r["factor_bytes_max"] / 1e6 for r in strong], "s-",
               label="factorization per rank")
    ax[1].set(xlabel="ranks P", ylabel="MB", xscale="log", yscale="log",
              title="memory per rank (largest rank)")
    ax[1].set_xticks(P, [str(p) for p in P])
    ax[1].minorticks_off()
    ax[1].legend(fontsize=8)
    for rows, lab, mk in ((strong, "strong", "o"), (weak, "weak", "s")):
        b = [max(c["bytes"] for c in r["comm_per_rank"]) for r in rows]
        m = [max(c["model"] for c in r["comm_per_rank"]) for r in rows]
        ax[2].plot([r["P"] for r in rows], b, mk + "-", label=f"measured ({lab})")
        ax[2].plot([r["P"] for r in rows], m, mk + ":", label=f"2 r log2 P x 8 ({lab})")
    ax[2].set(xlabel="ranks P", ylabel="bytes per matvec and rank (1 rhs)",
              title="communication per matvec")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick-build", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=65536, help="strong scaling N")
    ap.add_argument("--weak-n", type=int, default=16384, help="weak scaling N per rank")
    ap.add_argument("--ranks", default="1,2,4,8")
    ap.add_argument("--largest", type=int, default=0,
                    help="also compress gauss3d up to this N on 2 ranks")
    ap.add_argument("--quick", action="store_true", help="N = 16384, weak 4096, P 1,2,4")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.n, args.weak_n, args.ranks = 16384, 4096, "1,2,4"
    ranks = [int(p) for p in args.ranks.split(",")]
    strong = [run_ranks(P, args.n) for P in ranks]
    table(strong, f"strong scaling (N = {args.n}, one thread per rank)")
    weak = [run_ranks(P, args.weak_n * P) for P in ranks]
    table(weak, f"weak scaling (N = {args.weak_n} per rank)")
    s1 = strong[0]
    print(f"\nbaseline: the serial HSSMatrix at N = {args.n} (one process, one thread): "
          f"compress {s1['serial_compress_s']:.2f} s, matvec {s1['serial_matvec1_s']:.4f} s, "
          f"factor {s1['serial_factor_s']:.3f} s, solve {s1['serial_solve1_s']:.4f} s; "
          f"distributed P = 1 equals it to {s1['equal_to_serial']:.1e}")
    targets = {}
    by_p = {r["P"]: r for r in strong}
    if 4 in by_p:
        targets["memory_P4_over_P1"] = by_p[4]["stored_bytes_max"] / s1["stored_bytes_max"]
    if 2 in by_p:
        for key in ("compress_s", "matvec1_s", "solve1_s", "factor_s"):
            targets[f"speedup_P2_{key[:-2]}"] = s1[key] / by_p[2][key]
    worst = max((max(c["bytes"] for c in r["comm_per_rank"])
                 / max(max(c["model"] for c in r["comm_per_rank"]), 1e-300))
                for r in strong + weak if r["P"] > 1) if len(ranks) > 1 else None
    targets["bytes_over_model_worst"] = worst
    print("targets:", json.dumps(targets, indent=1))
    largest = []
    if args.largest:
        N = 2 ** 19
        while N <= args.largest:
            try:
                r = run_ranks(2, N, quick_build=True, timeout=5400)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"N = {N} on 2 ranks: failed ({exc})")
                break
            print(f"largest: N = {N} on 2 ranks: compress {r['compress_s']:.1f} s, "
                  f"H~ {r['stored_bytes_max'] / 1e9:.2f} GB on the larger rank, peak "
                  f"RSS {r['peak_rss_max'] / 1e9:.2f} GB per rank; phases "
                  + ", ".join(f"{k} {v:.1f}" for k, v in r["phases_s"].items()))
            largest.append(r)
            N *= 2
    from _results import write_results
    write_results(os.path.join(HERE, "bench_scaling.json"), strong,
                  weak=weak, targets=targets, largest=largest, params=PARAMS)
    plot(strong, weak, os.path.join(HERE, "scaling.png"))


if __name__ == "__main__":
    main()
