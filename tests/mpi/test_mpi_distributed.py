"""The memory-distributed HSS matrix under mpiexec -n 1, 2, 3, 4 (make test): the
same matrix as the serial one to round-off, 1/P of the storage per rank, the
messages of the model, and errors that reach every rank."""
import numpy as np
import pytest
from mpi4py import MPI

import hsspetsc
from hsspetsc.matrix.distributed import DistributedHSSMatrix, distribute
from hsspetsc.mpi.comm import CollectiveError

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
N = 2400


@pytest.fixture(scope="module")
def kernel():
    X = np.random.default_rng(7).standard_normal((N, 3))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.8)


@pytest.fixture(scope="module")
def dense(kernel):
    return kernel.to_dense()


CASES = {
    # name: (front door, source, parameters)
    "entries": ("compress", "kernel", dict(leaf_size=48, tol=1e-6)),
    "entries-capped": ("compress", "kernel", dict(leaf_size=40, tol=1e-8, max_rank=24)),
    "entries-uniform": ("compress", "kernel", dict(leaf_size=64, tol=1e-5, neighbors=0)),
    "sketch": ("compress_sketch", "dense", dict(leaf_size=50, tol=1e-6, samples=100,
                                                order="angle")),
    # shift-aware: tol is the share of the shift
    "entries-shift": ("compress", "kernel", dict(leaf_size=48, tol=0.3, shift=1e-2)),
    "sketch-shift": ("compress_sketch", "dense", dict(leaf_size=50, tol=0.3, shift=1e-2,
                                                      samples=100, order="angle")),
}


def _build(case, kernel, dense, comm):
    door, which, kw = CASES[case]
    fn = getattr(hsspetsc, door)
    src = kernel if which == "kernel" else dense
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(src, comm=comm, **kw) if comm is not None else fn(src, **kw)


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, kernel, dense):
    H = _build(request.param, kernel, dense, None)
    D = _build(request.param, kernel, dense, COMM)
    return request.param, H, D


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def test_matvec_equals_serial(pair):
    _, H, D = pair
    assert isinstance(D, DistributedHSSMatrix)
    W = np.random.default_rng(1).standard_normal((N, 3))
    ref = H @ W
    loc = D.local_indices
    assert _rel(D.matvec(W[loc]), ref[loc]) < 1e-12
    assert _rel(D.matvec(W[loc, 0]), ref[loc, 0]) < 1e-12       # one vector
    # the rows of all ranks are a partition of the index set
    allidx = np.concatenate(COMM.allgather(loc))
    assert np.array_equal(np.sort(allidx), np.arange(N))


def test_solve_and_logdet_equal_serial(pair):
    _, H, D = pair
    B = np.random.default_rng(2).standard_normal((N, 2))
    shift = 1e-3 * float(np.max(H.diagonal()))
    F, FD = H.factorize(shift), D.factorize(shift)
    loc = D.local_indices
    X = FD.solve(B[loc])
    assert _rel(X, F.solve(B)[loc]) < 1e-12
    assert abs(FD.logdet() - F.logdet()) < 1e-10 * abs(F.logdet())
    # and it inverts the distributed matrix itself
    assert _rel(D.matvec(X) + shift * X, B[loc]) < 1e-8


def test_scipy_operator_of_the_factorization_needs_one_process(pair):
    """The one factorization class serves both matrices; scipy's operator holds
    whole vectors, so with P ranks it is refused with a clear error."""
    _, H, D = pair
    FD = D.factorize(1e-3 * H.max_diagonal())
    B = np.random.default_rng(5).standard_normal(D.n_local)
    if SIZE == 1:
        assert np.array_equal(FD.as_linear_operator() @ B, FD.solve(B))
    else:
        with pytest.raises(TypeError, match="each rank's rows"):
            FD.as_linear_operator()


def test_contract_equals_serial(pair):
    _, H, D = pair
    s, hs = D.stats(), H.stats()
    for key in ("error_estimate_uncompensated", "error_estimate", "compensation",
                "shift_error"):
        assert s.get(key) == pytest.approx(hs.get(key), rel=1e-9, abs=1e-300), key
    assert [t["node"] for t in s["truncated_nodes"]] == [t["node"] for t in hs["truncated_nodes"]]
    assert np.array_equal(D.rank[D.rank > 0], H.rank[D.rank > 0])


def test_storage_per_rank_is_about_one_pth(pair):
    """Each rank stores its share of the tree order (about 1/P) of the serial data,
    plus the blocks of its shared ancestors and O(N / leaf_size) bookkeeping."""
    case, H, D = pair
    s = D.stats()
    serial = H.stats()["data_bytes"]
    share = D.n_local / N
    anc = [a for a in D.own.ancestors if a > 0]
    top = 8 * sum(int(D.rank[a] * D.ncols[a]) for a in anc) + 8 * sum(
        int(D.rank[2 * a + 1] * D.rank[2 * a + 2]) for a in D.own.ancestors)
    if case.endswith("-shift"):
        # shift-aware ranks follow the data, so subtrees of equal size hold different
        # shares; the ranks together hold the serial data once, plus the shared
        # ancestors' blocks, which every rank below them keeps
        total = D.comm.sum(float(s["data_bytes"]))
        assert serial <= total <= 1.05 * serial + D.comm.sum(float(top))
        assert s["total_stored_bytes"] == sum(s["per_rank_stored_bytes"])
        return
    assert s["data_bytes"] <= 1.05 * share * serial + top
    assert s["data_bytes"] >= 0.8 * share * serial
    serial_index = H.stats()["stored_bytes"] - serial
    assert (s["stored_bytes"] - s["data_bytes"]
            <= 1.05 * share * serial_index + 8 * 24 * D.tree.n_nodes)
    assert s["per_rank_stored_bytes"][RANK] == s["stored_bytes"]
    assert s["total_stored_bytes"] == sum(s["per_rank_stored_bytes"])


def test_messages_match_the_model(pair):
    """Per matvec: one receive per shared level, r x nrhs doubles each way."""
    _, H, D = pair
    k = 3
    before = dict(D.stats()["comm"].get("matvec", {}))
    D.matvec(np.ones((D.n_local, k)))
    s = D.stats()
    after = s["comm"]["matvec"]
    got = (after["bytes_sent"] + after["bytes_received"]
           - before.get("bytes_sent", 0) - before.get("bytes_received", 0))
    assert got == k * s["comm_model"]["matvec_bytes_per_rhs"]
    msgs = (after["messages_sent"] + after["messages_received"]
            - before.get("messages_sent", 0) - before.get("messages_received", 0))
    assert msgs == s["comm_model"]["matvec_messages"]
    assert (after["messages_received"] - before.get("messages_received", 0)
            == len(D.own.path))
    # and the model: 2 r nrhs 8 bytes per level for equal groups
    if SIZE in (2, 4):
        r = [(int(D.rank[e[1]]), int(D.rank[e[2]])) for e in D.own.path]
        assert got == sum(8 * k * (a + b) for a, b in r)
        assert len(D.own.path) == int(np.log2(SIZE))


def test_distribute_equals_construction(pair):
    _, H, D = pair
    D2 = distribute(H, COMM)
    W = np.random.default_rng(3).standard_normal((N, 2))
    loc = D.local_indices
    assert np.array_equal(D2.local_indices, loc)
    assert _rel(D2.matvec(W[loc]), D.matvec(W[loc])) < 1e-13


def test_construction_is_the_serial_one_cut_per_rank(pair):
    """One driver for every P: each rank's skeletons, interpolation matrices and
    stored blocks are the serial build's, cut for this rank, to the last bit."""
    _, H, D = pair
    D2 = distribute(H, COMM)
    for name in ("rank", "ncols", "skel_ptr", "skel_idx", "skel_pos", "proj_ptr",
                 "proj", "near_pairs", "near_data", "far_pairs", "far_data"):
        assert np.array_equal(getattr(D, name), getattr(D2, name)), name
    assert D.stats()["truncated_nodes"] == H.stats()["truncated_nodes"]


def test_spd_factors_at_tiny_shifts(pair):
    _, H, D = pair
    scale = float(np.max(H.diagonal()))
    F = D.factorize(1e-10 * scale)
    B = np.random.default_rng(4).standard_normal(D.n_local)
    assert np.all(np.isfinite(F.solve(B)))


def test_norm_matches_serial(pair):
    _, H, D = pair
    assert D.norm() == pytest.approx(H.norm(), rel=1e-10)


# ---------------------------------------------------------------- bad input
def _expect_everywhere(fn, exc_here, match_here=None):
    """``fn`` must raise on every rank: ``exc_here`` where the fault is, a
    CollectiveError (or the same error) elsewhere; no rank hangs."""
    with pytest.raises((exc_here, CollectiveError)) as info:
        fn()
    if match_here is not None and isinstance(info.value, exc_here):
        assert match_here in str(info.value)
    COMM.Barrier()


def test_wrong_rows_on_one_rank(kernel):
    D = hsspetsc.compress(kernel, leaf_size=64, tol=1e-4, comm=COMM)
    rows = D.n_local + (1 if RANK == SIZE - 1 else 0)
    _expect_everywhere(lambda: D.matvec(np.ones(rows)), ValueError, "rows")
    bad = np.ones(D.n_local)
    if RANK == 0:
        bad[0] = np.nan
    _expect_everywhere(lambda: D.factorize(1e-3).solve(bad), ValueError, "NaN")
    if SIZE > 1:
        cols = 2 if RANK == 0 else 1
        _expect_everywhere(lambda: D.matvec(np.ones((D.n_local, cols))), ValueError)
    # after all that the matrix still works
    assert np.all(np.isfinite(D.matvec(np.ones(D.n_local))))


def test_source_that_differs_between_ranks(kernel):
    X = np.random.default_rng(7).standard_normal((N, 3))
    if RANK == SIZE - 1 and SIZE > 1:
        X = X * 1.01
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.8 + 0.1 * (RANK == SIZE - 1))
    if SIZE == 1:
        pytest.skip("one rank: nothing to differ")
    with pytest.raises(CollectiveError, match="disagree"):
        hsspetsc.compress(src, leaf_size=64, tol=1e-4, comm=COMM)


def test_one_rank_failing_during_construction(kernel):
    """A source whose entries raise on the last rank (only there): every rank
    raises, none hangs."""
    def entries(I, J):
        # the 8 x 8 checksum block passes; the skeletons' reads fail
        if RANK == SIZE - 1 and np.size(I) * np.size(J) > 64:
            raise RuntimeError("disk quota exceeded")
        return kernel.entries(I, J)
    flaky = hsspetsc.EntrySource(N, entries, kernel.diagonal)
    with pytest.raises((RuntimeError, CollectiveError), match="disk quota"):
        hsspetsc.compress(flaky, leaf_size=64, tol=1e-4, neighbors=0, comm=COMM)
    COMM.Barrier()


def test_too_many_ranks_for_the_tree():
    if SIZE == 1:
        pytest.skip("one rank always fits")
    K = np.eye(40) + 0.1
    with pytest.raises((ValueError, CollectiveError), match="leaves"):
        hsspetsc.compress(K, leaf_size=40, comm=COMM)


def test_near_field_is_not_distributed(kernel):
    with pytest.raises((ValueError, CollectiveError), match="budget"):
        hsspetsc.compress(kernel, leaf_size=64, budget=0.1, comm=COMM)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_source_not_psd_in_one_ranks_leaf(dense):
    """A violated 2 x 2 minor inside a leaf of the last rank only: every rank
    raises (the check runs on each rank's own leaves), none hangs."""
    D0 = hsspetsc.compress_sketch(dense, leaf_size=50, samples=60, order="natural",
                                  comm=COMM)
    i, j = (int(v) for v in COMM.bcast(D0.local_indices[:2] if RANK == SIZE - 1
                                       else None, root=SIZE - 1))
    K = dense.copy()
    K[i, j] = K[j, i] = 3.0 * np.sqrt(K[i, i] * K[j, j])
    with pytest.raises((ValueError, CollectiveError), match="positive semi-definite"):
        hsspetsc.compress_sketch(K, leaf_size=50, samples=60, order="natural", comm=COMM)
    COMM.Barrier()


def test_bad_or_different_shift_on_one_rank(kernel):
    D = hsspetsc.compress(kernel, leaf_size=64, tol=1e-4, comm=COMM)
    _expect_everywhere(lambda: D.factorize(-1.0 if RANK == SIZE - 1 else 1e-3),
                       ValueError, "shift")
    if SIZE > 1:
        _expect_everywhere(lambda: D.factorize(1e-3 * (1 + RANK)), ValueError,
                           "different shifts")
    assert np.all(np.isfinite(D.factorize(1e-3).solve(np.ones(D.n_local))))
