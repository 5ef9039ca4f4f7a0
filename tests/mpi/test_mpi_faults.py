"""One rank's error is every rank's error: no rank is left waiting in a collective.

Each test makes one rank (the last) fail and checks that every rank raises the same
CollectiveError, then that the ranks still talk (a plain allgather afterwards).
"""
import os
import tempfile

import numpy as np
import pytest
from petsc4py import PETSc

from hsspetsc import gallery
from hsspetsc.mlp import MLP, load
from hsspetsc.training import ShardedProblem, Trainer, run
from hsspetsc.training.distributed import CollectiveError

COMM = PETSc.COMM_WORLD.tompi4py()
LAST = COMM.Get_size() - 1
two_ranks = pytest.mark.skipif(COMM.Get_size() < 2, reason="needs two ranks or more")


def _problem(seed=0):
    X, _ = load("digits", 120)
    return ShardedProblem(MLP([64, 5, 64], activation="tanh", seed=seed), X, X, comm=COMM)


def _same_error_everywhere(excinfo, text):
    msg = str(excinfo.value)
    assert text in msg
    assert all(m == msg for m in COMM.allgather(msg))      # and the ranks still talk


class Boom(RuntimeError):
    pass


def _boom(*args, **kwargs):
    raise Boom("injected on the last rank")


@two_ranks
def test_entries_error_on_one_rank():
    gn = _problem().gauss_newton(_problem().model.params)
    if COMM.Get_rank() == LAST:
        gn.local._gn_evaluator = _boom
    with pytest.raises(CollectiveError) as e:
        gn.entries_batch([(np.arange(4), np.arange(6))])
    _same_error_everywhere(e, f"rank {LAST} of {COMM.Get_size()} failed: Boom")


@two_ranks
def test_entries_error_inside_the_hss_preconditioner():
    # a collective source (the distributed Gauss-Newton matrix) raising on one rank
    # while HSSPC compresses it on each rank's own (COMM_SELF) solver
    from hsspetsc.petsc import HSSPC
    pb = _problem()
    gn = pb.gauss_newton(pb.model.params, damping=1e-2)
    if COMM.Get_rank() == LAST:
        gn.local._gn_evaluator = _boom
    pc = PETSc.PC().createPython(HSSPC(), comm=PETSc.COMM_SELF)
    A = PETSc.Mat().createPython((gn.n, gn.n), gn, comm=PETSc.COMM_SELF)
    A.setUp()
    pc.setOperators(A)
    try:
        with pytest.raises(Exception):
            pc.setUp()
        assert isinstance(pb.comm.failed, CollectiveError)
        msg = str(pb.comm.failed)
        assert "Boom: injected on the last rank" in msg
        assert all(m == msg for m in COMM.allgather(msg))
    finally:
        pc.destroy()
        A.destroy()


@two_ranks
def test_training_step_error_on_one_rank(tmp_path):
    pb = _problem()
    tr = Trainer(pb, "newton-hss", newton={"curvature_samples": None, "rebuild": 2},
                 prefix="fault_step_")
    real = pb.model.loss_grad
    calls = []

    def fails_late(*args):
        calls.append(1)
        if len(calls) == 3:
            raise Boom("injected on the last rank")
        return real(*args)
    if COMM.Get_rank() == LAST:
        pb.model.loss_grad = fails_late
    log = COMM.bcast(str(tmp_path / "log.json") if COMM.Get_rank() == 0 else None)
    try:
        with pytest.raises(CollectiveError) as e:
            run(tr, max_steps=6, log=log, printer=None)
    finally:
        tr.destroy()
    _same_error_everywhere(e, "Boom: injected on the last rank")


@two_ranks
def test_checkpoint_write_error_on_rank_zero(tmp_path):
    # rank 0 writes; the folder disappears under it: everyone hears of it
    pb = _problem()
    tr = Trainer(pb, "adam", lr=1e-2)
    with pytest.raises(CollectiveError) as e:
        run(tr, max_steps=2, checkpoint="/nonexistent-hsspetsc/ck.npz", printer=None)
    _same_error_everywhere(e, "rank 0 of")


@two_ranks
def test_ranks_with_different_data_or_seed_refuse_to_start():
    X, _ = load("digits", 120)
    if COMM.Get_rank() == LAST:
        X = X.copy()
        X[7, 3] += 1.0
    with pytest.raises(CollectiveError) as e:
        ShardedProblem(MLP([64, 5, 64], seed=0), X, X, comm=COMM)
    _same_error_everywhere(e, "the ranks disagree")
    with pytest.raises(CollectiveError) as e:
        _problem(seed=1 if COMM.Get_rank() == LAST else 0)
    _same_error_everywhere(e, "the ranks disagree")


@pytest.mark.parametrize("attempt", range(10))
def test_cold_cache_race(attempt):
    # every rank asks for the same matrix at once from an empty cache folder
    folder = COMM.bcast(tempfile.mkdtemp(prefix="hsspetsc-race-")
                        if COMM.Get_rank() == 0 else None)
    old = os.environ.get("HSSPETSC_CACHE")
    os.environ["HSSPETSC_CACHE"] = folder
    try:
        src = gallery.testsuite("K02", 1024, seed=attempt)
        A = np.asarray(src.A)
    finally:
        if old is None:
            del os.environ["HSSPETSC_CACHE"]
        else:
            os.environ["HSSPETSC_CACHE"] = old
    ref = COMM.bcast(A if COMM.Get_rank() == 0 else None)
    assert np.array_equal(A, ref)
    COMM.Barrier()
    if COMM.Get_rank() == 0:
        left = os.listdir(folder)
        assert not [f for f in left if ".tmp" in f], left     # no temporary left over
        for f in left:
            os.remove(os.path.join(folder, f))
        os.rmdir(folder)


@two_ranks
def test_tao_gauss_newton_entries_error_on_one_rank():
    from hsspetsc.mlp.gauss_newton import GaussNewton
    from hsspetsc.training.tao import tao_train
    pb = _problem()
    real = GaussNewton._gn_evaluator
    if COMM.Get_rank() == LAST:
        GaussNewton._gn_evaluator = _boom
    try:
        with pytest.raises(CollectiveError) as e:
            tao_train(pb, max_it=3, prefix="fault_tao_", curvature_samples=32)
    finally:
        GaussNewton._gn_evaluator = real
    _same_error_everywhere(e, f"rank {LAST} of {COMM.Get_size()} failed: Boom")


def test_one_communicator_object_for_a_command():
    """The protocol of hsspetsc.Comm: a value gathered from every rank; an error of
    one rank the same CollectiveError on every rank (the failing one too); an
    error every rank meets alike raised as it is; and after either the ranks
    still agree."""
    from hsspetsc import Comm
    c = Comm.of(PETSc.COMM_WORLD)
    assert Comm.of(c) is c and c.size == COMM.Get_size() and c.rank == COMM.Get_rank()
    assert c.gather(c.rank * 10) == [10 * r for r in range(c.size)]
    if c.size > 1:
        with pytest.raises(CollectiveError) as e:
            c.run(_boom) if c.rank == LAST else c.agree()
        _same_error_everywhere(e, f"rank {LAST} of {c.size} failed: Boom")
    with pytest.raises(ValueError, match="bad everywhere"):
        c.together(lambda: (_ for _ in ()).throw(ValueError("bad everywhere")))
    # a step that fails on one rank ends together: no rank goes on alone
    with pytest.raises((Boom, CollectiveError), match="injected"):
        c.together(lambda: _boom() if c.rank == LAST else None)
    assert c.sum(1.0) == float(c.size) and c.max(c.rank) == c.size - 1
    counts = np.arange(1, c.size + 1)
    got = c.allgatherv(np.full(c.rank + 1, float(c.rank)), counts)
    assert np.array_equal(got, np.repeat(np.arange(c.size, dtype=float), counts))
