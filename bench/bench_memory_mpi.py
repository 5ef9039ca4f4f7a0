"""The memory estimate per rank under mpiexec (not a test): one Newton step of
newton-hss with a distributed H~, the tracemalloc peak of each rank against the
plan's estimate.

    OMP_NUM_THREADS=1 mpiexec -n 2 .venv/bin/python bench/bench_memory_mpi.py
"""
import sys
import tracemalloc
import warnings

import petsc4py

petsc4py.init([sys.argv[0]])
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from hsspetsc.mlp import MLP  # noqa: E402
from hsspetsc.training import ShardedProblem  # noqa: E402
from hsspetsc.training.newton import NewtonKrylov  # noqa: E402


def main():
    comm = MPI.COMM_WORLD
    tracemalloc.start()
    rng = np.random.default_rng(0)
    X = rng.random((500, 784))
    model = MLP([784, 200, 30, 200, 784], activation="sigmoid", seed=0)
    pb = ShardedProblem(model, X, X, comm=comm)
    nk = NewtonKrylov(pb, precond="hss", curvature_samples=64, hss_samples=32,
                      pc_options={"pc_hss_leaf_size": "128"}, cg_max_it=20,
                      memory_limit=np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nk.step(model.params.copy())
    peak = tracemalloc.get_traced_memory()[1]
    e = nk.memory_plan.estimate
    rows = comm.gather((peak, e.peak, e.peak_phase, nk.ctx.comm is not None))
    if comm.rank == 0:
        for i, (p, est, ph, dist) in enumerate(rows):
            print(f"rank {i}: traced {p / 2 ** 20:.0f} MB, estimate {est / 2 ** 20:.0f} MB "
                  f"({est / p:.2f}), peak phase {ph}, distributed H~ {dist}")
    nk.destroy()


if __name__ == "__main__":
    main()
