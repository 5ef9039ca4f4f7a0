"""Run under mpiexec (make test runs it with 2 and 4 ranks):

    mpiexec -n 2 .venv/bin/python -m pytest -q -p no:cacheprovider tests/mpi
"""
import numpy as np
import pytest
from helpers import assert_close
from helpers import cg_solve as _cg
from petsc4py import PETSc

import hsspetsc
import hsspetsc.petsc as hp

COMM = PETSc.COMM_WORLD
RANK = COMM.getRank()
SIZE = COMM.getSize()


@pytest.fixture(scope="module")
def problem():
    src = hsspetsc.gallery.testsuite("K02", 1024)
    H = hsspetsc.compress(src, leaf_size=64, tol=1e-7, seed=0)
    return src, H


def _vec_from(full, template):
    v = template.duplicate()
    rs, re = v.getOwnershipRange()
    v.setArray(full[rs:re])
    return v


def test_mat_mult_matches_serial(problem):
    src, H = problem
    A = hp.as_petsc_mat(H, comm=COMM, shift=0.25)
    try:
        x, y = A.createVecs()
        assert x.getLocalSize() < H.n or SIZE == 1
        xs = np.random.default_rng(1).standard_normal(H.n)
        xv = _vec_from(xs, x)
        A.mult(xv, y)
        rs, re = y.getOwnershipRange()
        assert_close(y.getArray(), (H @ xs + 0.25 * xs)[rs:re], rtol=1e-12)
        d = A.getDiagonal()
        assert_close(d.getArray(), (src.diagonal() + 0.25)[rs:re], rtol=1e-12)
        for v in (x, y, xv, d):
            v.destroy()
    finally:
        A.destroy()


def test_pcg_with_hsspc_matches_one_rank(problem):
    src, H = problem
    opts = {"pc_type": "python", "pc_python_type": "hsspetsc.petsc.HSSPC"}
    A = hp.as_petsc_mat(H, comm=COMM, shift=1e-4)
    A1 = hp.as_petsc_mat(H, comm=PETSc.COMM_SELF, shift=1e-4)
    try:
        it, reason, x = _cg(A, "mpi_", opts, COMM)
        it1, reason1, x1 = _cg(A1, "self_", opts, PETSc.COMM_SELF)
        itn, reasonn, _ = _cg(A, "mpin_", {"pc_type": "none"}, COMM)
    finally:
        A.destroy()
        A1.destroy()
    assert reason > 0 and reason1 > 0 and reasonn > 0
    assert it == it1 and it <= 3 < itn / 5
    assert_close(x, x1, rtol=1e-10)
    # every rank ends with the same solution
    allx = COMM.tompi4py().allgather(x)
    for other in allx:
        assert np.array_equal(other, x)


def test_pc_compressing_the_source_under_mpi(problem):
    src, _ = problem
    H = hsspetsc.compress(src, leaf_size=64, tol=1e-7, budget=0.05)
    A = hp.as_petsc_mat(H, comm=COMM, shift=1e-4, source=src)
    try:
        it, reason, _ = _cg(A, "mpis_", {"pc_type": "python",
                                         "pc_python_type": "hsspetsc.petsc.HSSPC",
                                         "pc_hss_tol": "1e-6"}, COMM)
    finally:
        A.destroy()
    assert reason > 0 and it <= 10


def test_bad_option_raises_on_every_rank_without_hanging(problem):
    src, H = problem
    A = hp.as_petsc_mat(H, comm=COMM, shift=1e-4, source=src)
    try:
        with pytest.raises(ValueError, match="'distance'"):
            _cg(A, "mpibad_", {"pc_type": "python", "pc_python_type": "hsspetsc.petsc.HSSPC",
                               "pc_hss_distance": "cosine"}, COMM)
    finally:
        A.destroy()


def test_one_rank_error_is_raised_everywhere():
    def fail_on_last():
        if RANK == SIZE - 1:
            raise ValueError("only the last rank fails")
        return RANK

    with pytest.raises((ValueError, RuntimeError), match="only the last rank fails"):
        hp.collective(COMM, fail_on_last)
    assert hp.collective(COMM, lambda: RANK) == RANK       # and still in step


def test_mismatched_layout_is_an_error(problem):
    _, H = problem
    A = hp.as_petsc_mat(H, comm=COMM)
    x = PETSc.Vec().createMPI((PETSc.DECIDE, H.n + 3), comm=COMM)
    y = PETSc.Vec().createMPI((PETSc.DECIDE, H.n + 3), comm=COMM)
    try:
        with pytest.raises(PETSc.Error):
            A.mult(x, y)
    finally:
        for o in (A, x, y):
            o.destroy()


def test_validate_ranks_under_mpi(problem):
    src, H = problem
    recs = hp.validate_ranks(H, src, nodes=[3, 9], comm=COMM)
    K = src.to_dense()
    for r in recs:
        cols = H.tree.indices(r["node"])
        rows = np.setdiff1d(np.arange(H.n), cols)
        s = np.linalg.svd(K[np.ix_(rows, cols)], compute_uv=False)
        assert r["svd_rank"] == int(np.sum(s > H.params["tol"] * s[0]))
    allrecs = COMM.tompi4py().allgather(recs)
    assert all(x == recs for x in allrecs)
