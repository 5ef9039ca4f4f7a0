"""What one matrix class costs: this tree against a checkout of an earlier commit,
side by side (not a test).

    .venv/bin/python bench/bench_structure.py --before DIR [--after DIR] [--rounds 3]
        [--quick]

``DIR`` is a built checkout of the commit to compare with (``git worktree add DIR
REV`` and ``python setup.py build_ext --inplace`` there); ``--after`` (default this
tree) another, so that this tree may change while the benchmark runs.

Both trees run in one process, the earlier one imported as ``hsspetsc_before``
(its imports are relative), so that the machine's drift between processes (10-30 %
here) does not enter the ratio. For each case (K02 from the test suite, N = 16384,
tol 1e-6; gauss3d, the Gaussian kernel with h = 0.2 on N = 65536 uniform points in
the unit cube, tol 1e-5, max_rank 128; the defaults otherwise, PSD compensation
included) and each layout (one process with 2 threads; ``mpiexec -n 2`` with one
thread per rank), each tree compresses the matrix ``--rounds`` times, then applies
it to 16 right-hand sides and solves with them (10 x rounds times each) and factors
it at shift 1e-4 x max diagonal (3 x rounds), the two trees taking turns call by
call (and starting in turn). The table gives the medians and the ratio after /
before; with 2 ranks each time is the slowest rank's. Also: the lines of code below
hsspetsc/ in each tree and, where the ``duplicates`` tool is installed, the pairs of
places it finds repeated there. Writes bench_structure.json next to this file.
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


def _source(pkg, case, n):
    """The case's source, made by ``pkg`` (each tree reads its own source type)."""
    if case == "K02":
        return pkg.gallery.testsuite("K02", n)
    X = np.random.default_rng(0).random((n, 3))
    return pkg.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2)


def prepare_before(checkout):
    """The earlier tree as a package of its own name, ``hsspetsc_before``, built
    beside the checkout (``<checkout>/.before_pkg``; reused when there): its Python
    imports are relative, and its kernels are compiled again under the new name
    (a compiled module finds the others by its package's name)."""
    dest = os.path.join(checkout, ".before_pkg")
    pkg = os.path.join(dest, "hsspetsc_before")
    if not os.path.isdir(pkg):
        tmp = dest + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(os.path.join(checkout, "hsspetsc"), os.path.join(tmp, "hsspetsc_before"),
                        ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
        with open(os.path.join(checkout, "setup.py")) as f:
            setup = f.read().replace("hsspetsc.", "hsspetsc_before.").replace(
                "hsspetsc/", "hsspetsc_before/")
        with open(os.path.join(tmp, "setup.py"), "w") as f:
            f.write(setup)
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                       cwd=tmp, check=True, capture_output=True)
        os.rename(tmp, dest)
    return dest


def _load_before(folder):
    """The earlier tree's package (see :func:`prepare_before`)."""
    import importlib
    sys.path.insert(0, folder)
    return importlib.import_module("hsspetsc_before")


def worker(case, n, before, distributed, rounds):
    """Both trees in one process (this one as ``hsspetsc``, the earlier one as
    ``hsspetsc_before``): each compresses the case ``rounds`` times and applies,
    factors and solves, the two taking turns operation by operation; prints the
    medians as JSON."""
    import hsspetsc
    pkgs = {"after": hsspetsc, "before": _load_before(before)}
    comm, size = None, 1
    if distributed:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        size = comm.Get_size()

    def once(f):
        if comm is not None:
            comm.Barrier()
        t = time.perf_counter()
        out = f()
        t = time.perf_counter() - t
        return out, (t if comm is None else comm.allreduce(t, op=MPI.MAX))

    params = dict(CASES[case][1])
    srcs = {k: _source(pkg, case, n) for k, pkg in pkgs.items()}
    times = {k: {op: [] for op in OPS} for k in pkgs}
    H = {}
    order = [("before", "after"), ("after", "before")]
    for r in range(rounds):
        for k in order[r % 2]:
            kw = dict(params, comm=comm) if comm is not None else params
            H[k], t = once(lambda: pkgs[k].compress(srcs[k], **kw))
            times[k]["compress"].append(t)
    rows = H["after"].n_local if comm is not None else H["after"].n
    W = np.random.default_rng(1).standard_normal((rows, 16))
    shift = 1e-4 * H["after"].max_diagonal()
    F = {k: H[k].factorize(shift) for k in H}
    for op, repeat, f in (("matvec", 10 * rounds, lambda k: H[k].matvec(W)),
                          ("factor", 3 * rounds, lambda k: H[k].factorize(shift)),
                          ("solve", 10 * rounds, lambda k: F[k].solve(W))):
        for k in H:
            f(k)                                   # warm-up
        for r in range(repeat):
            for k in order[r % 2]:
                times[k][op].append(once(lambda: f(k))[1])
    out = {"case": case, "N": n, "ranks": size,
           "samples": {k: {op: len(v) for op, v in t.items()} for k, t in times.items()}}
    for k in pkgs:
        out[k] = {op: float(np.median(v)) for op, v in times[k].items()}
    if comm is None or comm.Get_rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _run(after, before, case, n, ranks, rounds):
    env = dict(os.environ, PYTHONPATH=after, **ENV)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", case, str(n),
           "--before", before, "--rounds", str(rounds)]
    if ranks == 1:
        env["OMP_NUM_THREADS"] = "2"
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = ["mpiexec", "--oversubscribe", "-n", str(ranks)] + cmd + ["--mpi"]
    p = subprocess.run(cmd, env=env, cwd=after, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{case} on {ranks} rank(s) failed:\n{p.stderr[-3000:]}")
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
    ap.add_argument("--rounds", type=int, default=3,
                    help="compressions per tree (and 10x that many matvecs and solves, "
                    "3x that many factorizations)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--cases", default="K02,gauss3d", help="comma-separated cases")
    ap.add_argument("--ranks", default="1,2", help="comma-separated layouts (1: one "
                    "process, 2: mpiexec -n 2)")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(HERE, "bench_structure.json"))
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker[0], int(a.worker[1]), a.before, a.mpi, a.rounds)
    for name in ("before", "after"):
        folder = getattr(a, name)
        if not folder or not os.path.isdir(os.path.join(folder, "hsspetsc")):
            ap.error(f"--{name} must name a built checkout (a folder with hsspetsc/ "
                     f"in it)")
    trees = {"before": os.path.abspath(a.before), "after": os.path.abspath(a.after)}
    built = prepare_before(trees["before"])
    results = []
    for case in a.cases.split(","):
        if case not in CASES:
            ap.error(f"--cases: {case!r} is not one of {', '.join(CASES)}")
        n = QUICK[case] if a.quick else CASES[case][0]
        for ranks in (int(r) for r in a.ranks.split(",")):
            got = _run(trees["after"], built, case, n, ranks, a.rounds)
            row = {"case": case, "N": n, "ranks": ranks, "samples": got["samples"]}
            for op in OPS:
                b, f = got["before"][op], got["after"][op]
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
