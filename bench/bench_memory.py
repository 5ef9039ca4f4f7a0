"""Memory benchmark (not a test): the trainer's planned peak against the measured one.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_memory.py [--quick]

For each configuration (net, samples, method, curvature samples, products, leaf
size) one Newton step runs in a fresh process: data, the CG operator, the
curvature mini-batch, the compression, the PC's factorization and CG. Measured:
the peak of the numpy buffers (tracemalloc, what the estimate models) and the growth
of the resident set (ru_maxrss after the step less before the data, which also holds
allocator slack and the libraries' own buffers). The estimate is
:func:`hsspetsc.training.memory.estimate_newton` with the same options. Writes
``bench/bench_memory.json``; the table goes into bench/RESULTS.md.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CONFIGS = [
    # widths, n, loss, precond, curvature samples, products, leaf
    ("784,200,30,200,784", 500, "mse", "hss", 64, 32, 128),
    ("784,200,30,200,784", 500, "mse", "hss", 64, 64, 128),
    ("784,200,30,200,784", 500, "mse", "hss", 32, 32, 64),
    ("784,200,30,200,784", 500, "mse", "hss", 128, 32, 256),
    ("784,200,30,200,784", 500, "mse", "hss", 64, 0, 64),
    ("784,200,30,200,784", 500, "mse", "hss", 32, 0, 128),
    ("784,300,100,10", 1000, "cross_entropy", "hss", 64, 48, 128),
    ("784,400,200,100,30,100,200,400,784", 500, "mse", "hss", 32, 32, 64),
    ("784,200,30,200,784", 500, "mse", "kfac", 64, 0, 128),
    ("784,200,30,200,784", 500, "mse", "hf", 128, 0, 128),
    ("784,200,30,200,784", 2000, "mse", "none", 64, 0, 128),
    # the deep autoencoder near its plan for a quarter of 24 GB (8, 24, 64)
    ("784,1000,500,250,30,250,500,1000,784", 2000, "mse", "hss", 8, 32, 64),
]
QUICK = CONFIGS[:2] + CONFIGS[6:7]


def one(cfg):
    """Run one Newton step of ``cfg`` here; print its measurements as JSON."""
    import resource
    import tracemalloc

    import petsc4py
    petsc4py.init([sys.argv[0]])
    import numpy as np

    from hsspetsc.mlp import MLP
    from hsspetsc.training import ShardedProblem
    from hsspetsc.training.newton import NewtonKrylov
    widths, n, loss, precond, m, s, leaf = cfg
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    tracemalloc.start()
    w = [int(x) for x in widths.split(",")]
    rng = np.random.default_rng(0)
    X = rng.random((n, w[0]))
    Y = X if loss == "mse" else rng.integers(0, w[-1], n)
    model = MLP(w, activation="sigmoid", loss=loss, seed=0)
    problem = ShardedProblem(model, X, Y)
    nk = NewtonKrylov(problem, precond=precond, curvature_samples=m, hss_samples=s,
                      pc_options={"pc_hss_leaf_size": str(leaf)}, cg_max_it=20,
                      memory_limit=2.0 ** 50)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nk.step(model.params.copy())
    peak = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0 - rss0
    est = nk.memory_plan.estimate
    nk.destroy()
    print(json.dumps({"traced_peak": peak, "rss_growth": rss, "estimate": est.peak,
                      "phase": est.peak_phase}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three configurations")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(HERE, "bench_memory.json"))
    args = ap.parse_args()
    if args.one is not None:
        return one(json.loads(args.one))
    from _results import write_results
    rows = []
    hdr = (f"{'net':<36} {'n':>5} {'method':<6} {'m':>4} {'s':>4} {'leaf':>4} "
           f"{'estimate':>9} {'traced':>9} {'est/tr':>6} {'rss':>9} {'est/rss':>7}  phase")
    print(hdr)
    for cfg in (QUICK if args.quick else CONFIGS):
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)],
                             capture_output=True, text=True, env=os.environ)
        if out.returncode:
            print(out.stderr[-2000:])
            raise SystemExit(f"configuration {cfg} failed")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        row = dict(zip(("widths", "n", "loss", "precond", "curvature_samples",
                        "hss_samples", "leaf_size"), cfg), **r)
        rows.append(row)
        mb = 2.0 ** 20
        print(f"{cfg[0]:<36} {cfg[1]:>5} {cfg[3]:<6} {cfg[4]:>4} {cfg[5]:>4} {cfg[6]:>4} "
              f"{r['estimate'] / mb:>7.0f}MB {r['traced_peak'] / mb:>7.0f}MB "
              f"{r['estimate'] / r['traced_peak']:>6.2f} {r['rss_growth'] / mb:>7.0f}MB "
              f"{r['estimate'] / max(r['rss_growth'], 1):>7.2f}  {r['phase']}", flush=True)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
