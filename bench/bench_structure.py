"""What one matrix class costs: this tree against a checkout of an earlier commit,
side by side (not a test).

    .venv/bin/python bench/bench_structure.py --before DIR [--after DIR] [--rounds 3]
        [--quick]

``DIR`` is a built checkout of the commit to compare with (``git worktree add DIR
REV`` and ``python setup.py build_ext --inplace`` there); ``--after`` (default this
tree) another, so that this tree may change while the benchmark runs. For each case (K02 from
the test suite, N = 16384, tol 1e-6; gauss3d, the Gaussian kernel with h = 0.2 on N =
65536 uniform points in the unit cube, tol 1e-5, max_rank 128) and each layout (one
process with 2 threads; ``mpiexec -n 2`` with one thread per rank), a fresh process
per tree compresses the matrix (the defaults otherwise, PSD compensation included)
and times a matvec and a solve with 16 right-hand sides (median of 15) and the
factorization at shift 1e-4 x max diagonal (median of 7); with 2 ranks each figure
is the slowest rank's. The two trees alternate, ``--rounds`` times; the table
gives the medians over the rounds and the ratio after / before. Also: the lines of
code below hsspetsc/ in each tree and, where the ``duplicates`` tool is installed,
the pairs of places it finds repeated there. Writes bench_structure.json next to
this file.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OMPI_MCA_rmaps_base_oversubscribe": "1",
       "OMPI_MCA_hwloc_base_binding_policy": "none"}
CASES = {"K02": (16384, {"tol": 1e-6}),
         "gauss3d": (65536, {"tol": 1e-5, "max_rank": 128})}
QUICK = {"K02": 4096, "gauss3d": 8192}
OPS = ("compress", "matvec", "factor", "solve")


def _source(case, n):
    import hsspetsc
    if case == "K02":
        return hsspetsc.gallery.testsuite("K02", n)
    X = np.random.default_rng(0).random((n, 3))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2)


def worker(case, n, distributed):
    """Time one tree (the one on sys.path) and print the figures as JSON."""
    import hsspetsc
    comm, size = None, 1
    if distributed:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        size = comm.Get_size()

    def slowest(t):
        return t if comm is None else comm.allreduce(t, op=MPI.MAX)

    def timed(f, repeat):
        f()
        ts = []
        for _ in range(repeat):
            if comm is not None:
                comm.Barrier()
            t = time.perf_counter()
            f()
            ts.append(slowest(time.perf_counter() - t))
        return float(np.median(ts))

    src = _source(case, n)
    params = dict(CASES[case][1])
    if comm is not None:
        comm.Barrier()
    t = time.perf_counter()
    H = hsspetsc.compress(src, comm=comm, **params) if comm is not None else \
        hsspetsc.compress(src, **params)
    t_compress = slowest(time.perf_counter() - t)
    rows = H.n_local if comm is not None else H.n
    W = np.random.default_rng(1).standard_normal((rows, 16))
    shift = 1e-4 * H.max_diagonal()
    F = H.factorize(shift)
    out = {"case": case, "N": n, "ranks": size, "compress": t_compress,
           "matvec": timed(lambda: H.matvec(W), 15),
           "factor": timed(lambda: H.factorize(shift), 7),
           "solve": timed(lambda: F.solve(W), 15)}
    if comm is None or comm.Get_rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _run(tree, case, n, ranks):
    env = dict(os.environ, PYTHONPATH=tree, **ENV)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", case, str(n)]
    if ranks == 1:
        env["OMP_NUM_THREADS"] = "2"
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = ["mpiexec", "--oversubscribe", "-n", str(ranks)] + cmd + ["--mpi"]
    p = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{tree}: {case} on {ranks} rank(s) failed:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def lines_of_code(tree):
    """Lines of the package's .py, .pyx and .pxd files (blank lines included)."""
    total = 0
    for folder, _, files in os.walk(os.path.join(tree, "hsspetsc")):
        for f in files:
            if f.endswith((".py", ".pyx", ".pxd")):
                with open(os.path.join(folder, f)) as fh:
                    total += sum(1 for _ in fh)
    return total


def duplicate_pairs(tree):
    """The pairs of repeated places ``duplicates`` finds below hsspetsc/ (None
    without the tool)."""
    tool = shutil.which("duplicates")
    if tool is None:
        return None
    p = subprocess.run([tool, "--repo", os.path.join(tree, "hsspetsc"), "--seconds", "120"],
                       capture_output=True, text=True)
    first = (p.stdout.splitlines() or [""])[0]
    if first.startswith("no duplicates"):
        return 0
    return int(first.split()[0]) if first.split() and first.split()[0].isdigit() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="a built checkout of the commit to compare with")
    ap.add_argument("--after", default=ROOT, help="the checkout to measure (default: "
                    "this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(HERE, "bench_structure.json"))
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker[0], int(a.worker[1]), a.mpi)
    for name in ("before", "after"):
        folder = getattr(a, name)
        if not folder or not os.path.isdir(os.path.join(folder, "hsspetsc")):
            ap.error(f"--{name} must name a built checkout (a folder with hsspetsc/ "
                     f"in it)")
    trees = {"before": os.path.abspath(a.before), "after": os.path.abspath(a.after)}
    results = []
    for case, (n, _) in CASES.items():
        n = QUICK[case] if a.quick else n
        for ranks in (1, 2):
            got = {"before": [], "after": []}
            for r in range(a.rounds):
                for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    got[name].append(_run(trees[name], case, n, ranks))
            row = {"case": case, "N": n, "ranks": ranks}
            for op in OPS:
                b = float(np.median([g[op] for g in got["before"]]))
                f = float(np.median([g[op] for g in got["after"]]))
                row[op] = {"before": b, "after": f, "ratio": f / b}
            results.append(row)
            print(f"{case:>8} N={n:<6} ranks={ranks}  " + "  ".join(
                f"{op} {row[op]['before']:.4g}/{row[op]['after']:.4g} s "
                f"({row[op]['ratio']:.3f})" for op in OPS), flush=True)
    loc = {name: lines_of_code(t) for name, t in trees.items()}
    dups = {name: duplicate_pairs(t) for name, t in trees.items()}
    rev = subprocess.run(["git", "-C", trees["before"], "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", trees["after"], "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    print(f"\nlines of code below hsspetsc/: before {loc['before']}, after {loc['after']}; "
          f"duplicates pairs: before {dups['before']}, after {dups['after']}")
    print("| case | N | ranks | " + " | ".join(f"{op} before / after (s) | ratio"
                                                for op in OPS) + " |")
    print("|---|---|---|" + "---|---|" * len(OPS))
    for row in results:
        print(f"| {row['case']} | {row['N']} | {row['ranks']} | " + " | ".join(
            f"{row[op]['before']:.4g} / {row[op]['after']:.4g} | {row[op]['ratio']:.3f}"
            for op in OPS) + " |")
    with open(a.out, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "before": rev,
                   "after": head, "rounds": a.rounds, "rows": results,
                   "lines_of_code": loc, "duplicate_pairs": dups}, f, indent=1)


if __name__ == "__main__":
    main()
