"""PETSc with a memory-distributed H~ under mpiexec -n 1..4: the shell Mat and HSSPC
on Vecs in PETSc's layout and user order (one scatter, no gather), KSP CG with the
same iterations as one rank, bad layouts and communicators refused everywhere."""
import warnings

import numpy as np
import pytest
from helpers import cg_solve
from mpi4py import MPI
from petsc4py import PETSc

import hsspetsc
import hsspetsc.petsc as hp
from hsspetsc.mpi.comm import CollectiveError

COMM = PETSc.COMM_WORLD
RANK, SIZE = COMM.getRank(), COMM.getSize()
N = 1800


@pytest.fixture(scope="module")
def problem():
    X = np.random.default_rng(11).standard_normal((N, 3))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)
    kw = dict(leaf_size=48, tol=1e-7, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        H = hsspetsc.compress(src, **kw)
        D = hsspetsc.compress(src, comm=MPI.COMM_WORLD, **kw)
    return src, H, D


def _full(v):
    g = hp._vec.Gatherer()
    out = g.full(v)
    g.destroy()
    return out


def _set(v, full):
    rs, re = v.getOwnershipRange()
    v.setArray(full[rs:re])


def test_mat_mult_in_user_order(problem):
    _, H, D = problem
    A = hp.as_petsc_mat(D, shift=0.5)
    x, y = A.createVecs()
    w = np.random.default_rng(1).standard_normal(N)
    _set(x, w)
    A.mult(x, y)
    ref = H @ w + 0.5 * w
    assert np.abs(_full(y) - ref).max() <= 1e-12 * np.abs(ref).max()
    d = A.getDiagonal()
    assert np.abs(_full(d) - (H.diagonal() + 0.5)).max() <= 1e-14 * np.abs(ref).max()
    for v in (x, y, d, A):
        v.destroy()


def test_native_tree_order(problem):
    _, H, D = problem
    A = hp.as_petsc_mat(D, native=True)
    x, y = A.createVecs()
    assert x.getLocalSize() == D.n_local
    w = np.random.default_rng(2).standard_normal(N)
    x.setArray(w[D.local_indices])
    A.mult(x, y)
    assert np.abs(y.getArray() - (H @ w)[D.local_indices]).max() <= 1e-12 * np.abs(w).max() * H.norm()
    for v in (x, y, A):
        v.destroy()


def _cg(A, prefix, opts_dict, comm):
    its, reason, x, ksp = cg_solve(A, prefix, opts_dict, comm, rtol=1e-9, max_it=3000,
                                   keep=True)
    return its, reason, x, ksp


def test_cg_with_hsspc_same_iterations_as_one_rank(problem):
    src, H, D = problem
    pc_opts = {"pc_type": "python", "pc_python_type": "hsspetsc.petsc.HSSPC"}
    # unpreconditioned at a small shift: many iterations, the same count
    A1 = hp.as_petsc_mat(H, comm=PETSc.COMM_SELF, shift=0.1)
    it1, r1, x1, k1 = _cg(A1, "ser_", {"pc_type": "none"}, PETSc.COMM_SELF)
    AD = hp.as_petsc_mat(D, shift=0.1)
    itd, rd, xd, kd = _cg(AD, "dst_", {"pc_type": "none"}, COMM)
    assert r1 > 0 and rd > 0
    # hundreds of iterations: dot products summed in another order drift a little
    assert abs(itd - it1) <= max(2, 0.03 * it1)
    assert np.abs(xd - x1).max() <= 1e-7 * np.abs(x1).max()
    # HSSPC on the distributed operator: H~ is inverted exactly, 1-2 iterations
    itp, rp, xp, kp = _cg(AD, "dpc_", pc_opts, COMM)
    itq, rq, xq, kq = _cg(A1, "spc_", pc_opts, PETSc.COMM_SELF)
    assert rp > 0 and itp == itq and itp <= 3
    assert np.abs(xp - xq).max() <= 1e-8 * np.abs(xq).max()
    pc = kp.getPC().getPythonContext()
    assert isinstance(pc.H, hsspetsc.matrix.distributed.DistributedHSSMatrix)
    # a coarse HSSPC (compressed again from the source): several iterations, the
    # same number on every rank count
    coarse = dict(pc_opts, pc_hss_tol="1e-4", pc_hss_leaf_size="40")
    A1s = hp.as_petsc_mat(H, comm=PETSc.COMM_SELF, shift=0.1, source=src)
    ADs = hp.as_petsc_mat(D, shift=0.1, source=src)
    itc1, rc1, xc1, kc1 = _cg(A1s, "sc_", coarse, PETSc.COMM_SELF)
    itcd, rcd, xcd, kcd = _cg(ADs, "dc_", coarse, COMM)
    assert rc1 > 0 and rcd > 0 and itc1 > 3
    assert itcd == itc1, (itcd, itc1)
    assert np.abs(xcd - xc1).max() <= 1e-7 * np.abs(xc1).max()
    for obj in (A1, AD, k1, kd, kp, kq, A1s, ADs, kc1, kcd):
        obj.destroy()


def test_pc_compresses_distributed_from_a_source(problem, tmp_path):
    """-pc_hss_distributed: the PC compresses the operator's source over the ranks;
    its view shows the memory of every rank."""
    src, H, D = problem
    A = hp.as_petsc_mat(H, shift=1e-2, source=src)
    opts = {"pc_type": "python", "pc_python_type": "hsspetsc.petsc.HSSPC",
            "pc_hss_distributed": "1", "pc_hss_tol": "1e-7", "pc_hss_leaf_size": "48"}
    it, r, x, ksp = _cg(A, "dsrc_", opts, COMM)
    assert r > 0 and it <= 3
    pc = ksp.getPC().getPythonContext()
    assert isinstance(pc.H, hsspetsc.matrix.distributed.DistributedHSSMatrix)
    path = str(tmp_path / f"view{RANK}.txt") if SIZE == 1 else None
    path = COMM.tompi4py().bcast(str(tmp_path / "view.txt") if RANK == 0 else None)
    viewer = PETSc.Viewer().createASCII(path, comm=COMM)
    ksp.view(viewer)
    viewer.destroy()
    if RANK == 0:
        text = open(path).read()
        for r in range(SIZE):
            assert f"rank {r}:" in text
    ksp.destroy()
    A.destroy()


def test_wrong_vec_size_is_refused_on_every_rank(problem):
    _, H, D = problem
    A = hp.as_petsc_mat(D)
    x = PETSc.Vec().createMPI(N + 1, comm=COMM)
    y = PETSc.Vec().createMPI(N, comm=COMM)
    with pytest.raises(Exception, match="global size|size"):
        A.mult(x, y)
    for v in (x, y, A):
        v.destroy()


def test_native_vec_with_another_layout_is_refused(problem):
    _, H, D = problem
    if SIZE == 1:
        pytest.skip("one rank: every layout is the native one")
    A = hp.as_petsc_mat(D, native=True)
    x = PETSc.Vec().createMPI(N, comm=COMM)          # PETSc's default split
    _, y = A.createVecs()
    if x.getLocalSize() == D.n_local and all(COMM.tompi4py().allgather(x.getLocalSize() == D.n_local)):
        pytest.skip("the default split happens to equal the tree split")
    with pytest.raises(Exception, match="native|local rows|Nonconforming"):
        A.mult(x, y)
    for v in (x, y, A):
        v.destroy()


def test_matrix_of_another_communicator_is_refused(problem):
    src, H, D = problem
    if SIZE == 1:
        pytest.skip("one rank: COMM_SELF and COMM_WORLD agree")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        Dself = hsspetsc.compress(src, leaf_size=96, tol=1e-4, comm=MPI.COMM_SELF)
    with pytest.raises((ValueError, RuntimeError, CollectiveError), match="communicator"):
        hp.as_petsc_mat(Dself, comm=COMM)
