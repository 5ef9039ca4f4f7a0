"""Under mpiexec without OMP_NUM_THREADS each rank takes cores // ranks threads (for
the OpenMP kernels and for BLAS); a user's OMP_NUM_THREADS is left alone."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py")

SCRIPT = r"""
import json, os
import numpy as np
from mpi4py import MPI
from threadpoolctl import threadpool_info
from hsspetsc.util.threads import effective_n_threads
from hsspetsc.mlp import MLP
from hsspetsc.training import ShardedProblem
X = np.random.default_rng(0).standard_normal((20, 4))
ShardedProblem(MLP([4, 2, 4]), X, X, comm=MPI.COMM_WORLD)
import sys
line = json.dumps({"omp": os.environ.get("OMP_NUM_THREADS"), "eff": effective_n_threads(),
                   "blas": [i["num_threads"] for i in threadpool_info()
                            if i["user_api"] == "blas"]})
sys.stdout.write(line + "\n")     # one write: the ranks' lines never interleave
sys.stdout.flush()
"""
BASE = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
BASE.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
            OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_hwloc_base_binding_policy="none")


def _run(env, ranks=2):
    p = subprocess.run(["mpiexec", "--oversubscribe", "-n", str(ranks), sys.executable,
                        "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]


@pytest.mark.parametrize("ranks", [2, 3])
def test_threads_per_rank_are_cores_over_ranks(ranks):
    want = max(1, len(os.sched_getaffinity(0)) // ranks)
    out = _run(BASE, ranks)
    assert len(out) == ranks
    for r in out:
        assert r["omp"] == str(want) and r["eff"] == want
        assert r["blas"] and all(b == want for b in r["blas"])


def test_a_users_omp_num_threads_is_kept():
    out = _run(dict(BASE, OMP_NUM_THREADS="3"))
    assert all(r["omp"] == "3" and r["eff"] == 3 for r in out)
