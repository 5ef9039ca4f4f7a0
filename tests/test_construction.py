"""The construction back end: reproducibility, batched source calls, kernel oracles."""
import numpy as np
import pytest
import scipy.linalg as sla
from helpers import assert_close

import hsspetsc
from hsspetsc.compression.interactions import build_interactions
from hsspetsc.compression.neighbors import approximate_neighbors
from hsspetsc.compression.tree import Metric, build_tree, level_leaf_range
from hsspetsc.util.blocks import (
    COL_TILE,
    TASK_ENTRIES,
    BlockReader,
    chunks,
    fill_tasks,
    ranges,
)


def _stored(H):
    """Every buffer an HSSMatrix stores."""
    return {"perm": H.tree.perm, "rank": H.rank, "skel_idx": H.skel_idx,
            "skel_pos": H.skel_pos, "proj_ptr": H.proj_ptr, "proj": H.proj,
            "near_pairs": H.near_pairs, "near": H.near_data, "far_pairs": H.far_pairs,
            "far_off": H.far_pair_off, "far": H.far_data, "sib_pairs": H.sib_pairs,
            "sib": H.sib_data}


def _assert_bitwise(H1, H2):
    s1, s2 = _stored(H1), _stored(H2)
    for name in s1:
        assert s1[name].dtype == s2[name].dtype, name
        assert np.array_equal(s1[name], s2[name]), name


@pytest.mark.parametrize("budget", [0.0, 0.1])
def test_compress_is_bitwise_identical_on_1_and_2_threads(gauss3d, budget):
    kw = dict(leaf_size=48, tol=1e-6, neighbors=8, budget=budget, seed=3)
    H1 = hsspetsc.compress(gauss3d, n_threads=1, **kw)
    H2 = hsspetsc.compress(gauss3d, n_threads=2, **kw)
    _assert_bitwise(H1, H2)
    assert H1.stats()["params"]["construction"] == "entries"
    H3 = hsspetsc.compress(gauss3d, n_threads=2, **dict(kw, seed=4))
    assert not np.array_equal(H1.tree.perm, H3.tree.perm)     # the seed matters


@pytest.mark.filterwarnings("ignore:compress_sketch")
@pytest.mark.parametrize("order", ["natural", "angle"])
def test_compress_sketch_is_bitwise_identical_on_1_and_2_threads(k05, order):
    K = k05.to_dense()
    kw = dict(samples=160, leaf_size=48, tol=1e-6, order=order, probes=4, seed=1)
    H1 = hsspetsc.compress_sketch(K, n_threads=1, **kw)
    H2 = hsspetsc.compress_sketch(K, n_threads=2, **kw)
    _assert_bitwise(H1, H2)
    assert H1.stats()["error_estimate"] == H2.stats()["error_estimate"]
    assert H1.stats()["params"]["construction"] == "sketch"


def test_callback_source_is_entered_once_per_round_and_gives_the_same_matrix(k02):
    """A Python source with entries_batch is called O(levels) times (not once per
    node), and the result equals the one from the dense array bit for bit."""
    K = k02.to_dense()
    calls = {"batch": 0, "blocks": 0, "single": 0}

    def batch(blocks):
        calls["batch"] += 1
        calls["blocks"] += len(blocks)
        return [K[np.ix_(I, J)] for I, J in blocks]

    def single(I, J):
        calls["single"] += 1
        return K[np.ix_(I, J)]

    src = hsspetsc.EntrySource(K.shape[0], single, np.diag(K), entries_batch=batch)
    kw = dict(leaf_size=32, tol=1e-6, neighbors=8, seed=2)
    H = hsspetsc.compress(src, **kw)
    L = H.n_levels
    iters = H.stats()["neighbor_iterations"]
    # tree: 3 rounds per level; each neighbour tree: 1 per level + its leaves, plus
    # the recall check; skeletons: 1 per level; stored blocks: 3
    bound = 3 * L + iters * (L + 2) + 1 + L + 3
    assert calls["single"] == 0
    assert calls["batch"] == H.stats()["source_calls"] <= bound
    assert calls["blocks"] > 4 * calls["batch"]            # many blocks per call
    _assert_bitwise(H, hsspetsc.compress(K, **kw))
    # without entries_batch the default loops over entries(): same matrix again
    plain = hsspetsc.EntrySource(K.shape[0], single, np.diag(K))
    _assert_bitwise(H, hsspetsc.compress(plain, **kw))
    assert calls["single"] == calls["blocks"]


def _reference_column_id(B, tol, max_rank, atol=None):
    """Numpy/scipy oracle of the ID kernel: QR, pivoted QR of R, rank by the
    Frobenius tail against |R_11| (or, with ``atol``, the first pivot |R_kk| <= atol),
    P = [I, R11^-1 R12] in pivot order."""
    m, n = B.shape
    R = sla.qr(B, mode="r")[0][:n] if m > n + n // 4 else B
    R, piv = sla.qr(R, mode="r", pivoting=True)
    kmax = min(R.shape[0], n)
    rows = np.array([np.sum(R[i, i:] ** 2) for i in range(kmax)])
    tails = np.sqrt(np.r_[np.cumsum(rows[::-1])[::-1], 0.0])
    r = int(np.argmax(tails <= tol * abs(R[0, 0])))
    if atol is not None:
        small = np.abs(np.diag(R)[:kmax]) <= atol
        r = int(np.argmax(small)) if small.any() else kmax
    r = min(r, max_rank)
    P = np.zeros((r, n))
    P[np.arange(r), piv[:r]] = 1.0
    P[:, piv[r:]] = sla.solve_triangular(R[:r, :r], R[:r, r:])
    return r, piv[:r], P


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("m,n,rank,max_rank", [(200, 40, 12, 64), (30, 50, 20, 64),
                                               (120, 60, 60, 25)])
def test_column_id_kernel_agrees_with_the_numpy_oracle(m, n, rank, max_rank, absolute):
    from hsspetsc.kernels.compression import IDs, column_ids
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((m, rank)) @ (rng.standard_normal((rank, n))
                                                * np.logspace(0, -12, n))
              for _ in range(3)]
    tol = 1e-7
    B = np.concatenate([b.ravel(order="F") for b in blocks])
    off = np.arange(3, dtype=np.int64) * m * n
    cap = min(max_rank, m, n)
    rank_out = np.zeros(3, np.int64)
    ach = np.zeros(3)
    proj = np.zeros(3 * cap * n)
    pos = np.zeros(3 * cap, np.int64)
    # shift-aware: an absolute threshold on the pivots |R_kk|, one per node
    atol = np.array([1e-3, 1e-6, 1e-9]) if absolute else np.zeros(0)
    ids = IDs(tol, max_rank, atol, rank_out, ach, proj,
              np.arange(3, dtype=np.int64) * cap * n, pos, np.arange(3, dtype=np.int64) * cap)
    column_ids(B, off, np.full(3, m, np.int64), np.full(3, n, np.int64), ids, 2)
    for t, blk in enumerate(blocks):
        r, piv, P = _reference_column_id(blk, tol, max_rank,
                                         atol[t] if absolute else None)
        assert rank_out[t] == r
        assert np.array_equal(pos[t * cap:t * cap + r], piv)
        got = proj[t * cap * n:t * cap * n + r * n].reshape(r, n)
        scale = np.abs(P).max()
        np.testing.assert_allclose(got, P, rtol=0, atol=1e-8 * scale)
        # and it is an interpolative decomposition of the block
        approx = blk[:, piv] @ got
        if absolute:
            # what is dropped: its largest column is at most the threshold
            assert np.linalg.norm(blk - approx, axis=0).max() <= 10 * max(
                atol[t], ach[t] * atol[t] / tol)
        else:
            err = np.linalg.norm(blk - approx) / np.linalg.norm(blk)
            assert err <= 10 * max(tol, ach[t])


def test_sampled_rows_avoid_the_node_and_its_near_leaves():
    from hsspetsc.kernels.compression import RowPool, node_keys, sample_rows
    X = np.random.default_rng(4).random((700, 2))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.1)
    metric = Metric(src, "angle", src.diagonal())
    tree = build_tree(700, metric, 20, 0)
    nb = approximate_neighbors(700, metric, 6, 20, 0)
    inter = build_interactions(tree, nb, 0.1)
    near = inter.near_leaves
    lev = tree.n_levels - 1
    nodes = tree.level_nodes(lev).astype(np.int64)
    lo = tree.node_off[nodes]
    hi = lo + tree.node_size[nodes]
    llo, lhi = level_leaf_range(tree, nodes)
    cols_ptr = np.r_[lo, 700].astype(np.int64)
    n_rows = np.full(nodes.size, 60, np.int64)
    keys = np.empty(nodes.size, np.uint64)
    node_keys(np.uint64(7), nodes, keys)
    rows = np.empty(int(n_rows.sum()), np.int64)
    cnt = np.empty(nodes.size, np.int64)
    mark = np.zeros((2, 700), np.int8)
    off = np.arange(nodes.size, dtype=np.int64) * 60
    from hsspetsc.compression.skeleton import _allowed_rows
    n_allowed = _allowed_rows(near, np.diff(tree.leaf_bounds()), llo, lhi, 700)
    where = RowPool(tree.perm, tree.iperm, tree.leaf_bounds(), near.indptr.astype(np.int64),
                    near.indices.astype(np.int64), True, nb.index, nb.dist, 0.75)
    sample_rows(lo, hi, llo, lhi, cols_ptr, tree.perm, n_rows, n_allowed, keys, where, off,
                rows, cnt, mark, 2)
    assert not mark.any()                                  # work buffer left clean
    leaf_of = tree.leaf_of_original()
    for t in range(nodes.size):
        r = rows[off[t]:off[t] + cnt[t]]
        assert 0 < r.size <= 60 and np.unique(r).size == r.size
        pos = tree.iperm[r]
        assert not np.any((pos >= lo[t]) & (pos < hi[t]))
        under = np.arange(llo[t], lhi[t])
        forbidden = np.union1d(under, near[under].indices)
        assert not np.isin(leaf_of[r], forbidden).any()


@pytest.mark.filterwarnings("ignore:compress_sketch")
def test_tree_from_a_given_permutation():
    K = np.exp(-np.abs(np.subtract.outer(np.arange(300.0), np.arange(300.0))) / 40)
    perm = np.random.default_rng(0).permutation(300)
    H = hsspetsc.compress_sketch(K, samples=80, leaf_size=40, tol=1e-6,
                                 order=perm, probes=0)
    assert np.array_equal(H.tree.perm, perm)
    assert H.stats()["params"]["distance"] == "given"


@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_tol_means_the_same_on_both_paths(tol):
    """Same tol, same kind of error: both paths land within a small factor of tol
    in the relative Frobenius norm."""
    x = np.sort(np.random.default_rng(5).random(1024))
    K = np.exp(-(x[:, None] - x[None, :]) ** 2 / (2 * 0.05 ** 2)) + 1e-3 * np.eye(1024)
    He = hsspetsc.compress(K, leaf_size=64, tol=tol, max_rank=512)
    Hs = hsspetsc.compress_sketch(K, samples=300, leaf_size=64, tol=tol, probes=0)
    for H in (He, Hs):
        err = np.linalg.norm(H.to_dense() - K) / np.linalg.norm(K)
        assert err <= 10 * tol, (H.params["construction"], err)
        assert not H.truncated


def test_block_list_helpers():
    assert np.array_equal(ranges([5, 0, 9], [2, 0, 3]), [5, 6, 9, 10, 11])
    assert ranges([1], [0]).size == 0
    T = TASK_ENTRIES
    blk, r0, r1, c0, c1 = fill_tasks([3, 0, 5 * T // 2], [4, 4, 1])
    assert np.array_equal(blk, [0, 2, 2, 2])
    assert np.array_equal(r0, [0, 0, T, 2 * T])
    assert np.array_equal(r1, [3, T, 2 * T, 5 * T // 2])
    assert np.array_equal(c0, [0, 0, 0, 0]) and np.array_equal(c1, [4, 1, 1, 1])
    # wide blocks are cut into tiles of at most T entries that cover each entry once
    rows, cols = np.array([3, 0, 700, 2]), np.array([T, 4, 1000, 2 * COL_TILE + 1])
    blk, r0, r1, c0, c1 = fill_tasks(rows, cols)
    assert ((r1 - r0) * (c1 - c0) <= T).all()
    for b in range(rows.size):
        cover = np.zeros((rows[b], cols[b]), dtype=int)
        for t in np.flatnonzero(blk == b):
            cover[r0[t]:r1[t], c0[t]:c1[t]] += 1
        assert (cover == 1).all()
    assert chunks([4, 4, 4, 10, 1], 8) == [(0, 2), (2, 3), (3, 4), (4, 5)]


def test_reader_refuses_bad_batches():
    src = hsspetsc.EntrySource(10, lambda I, J: np.zeros((len(I), len(J))), np.ones(10),
                               entries_batch=lambda blocks: [np.zeros((1, 1))])
    z = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="entries_batch"):
        BlockReader(src).read(z, [2, 2], np.arange(10), z, [3, 3], np.arange(10))
    src = hsspetsc.EntrySource(10, lambda I, J: np.zeros((len(I), len(J))), np.ones(10),
                               entries_batch=lambda blocks: [np.full((2, 3), np.nan)
                                                             for _ in blocks])
    with pytest.raises(ValueError, match="NaN"):
        BlockReader(src).read(z, [2, 2], np.arange(10), z, [3, 3], np.arange(10))


def test_high_budget_still_takes_every_allowed_row():
    """With a large near field the rows outside a node's near leaves are few: all of
    them are used, so tol is met (a sampler that drew only some lost 4 digits)."""
    x = np.random.default_rng(0).random((1000, 2))
    K = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / 0.05) + 1e-3 * np.eye(1000)
    for budget in (0.5, 0.95):
        H = hsspetsc.compress(K, leaf_size=16, tol=1e-8, budget=budget, max_rank=200)
        err = np.linalg.norm(H.to_dense() - K) / np.linalg.norm(K)
        assert err <= 10 * 1e-8 and not H.truncated, (budget, err)


def test_gauss_newton_subclass_with_its_own_entries_is_used_not_bypassed():
    from hsspetsc.mlp import MLP, GaussNewton
    X = np.random.default_rng(0).standard_normal((30, 5))
    m = MLP([5, 3, 5], seed=0)

    class Doubled(GaussNewton):
        def _block(self, I, J):
            return 2 * super()._block(I, J)

    G, D = GaussNewton(m, X, X, damping=1e-3), Doubled(m, X, X, damping=1e-3)
    idx = np.arange(G.n)
    assert D.evaluator() is None
    assert_close(D.entries(idx, idx), 2 * G.entries(idx, idx), rtol=1e-12)
    H = hsspetsc.compress(D, leaf_size=8, tol=1e-10, neighbors=4)
    assert_close(H.to_dense(), 2 * G.entries(idx, idx), rtol=1e-6)


def test_sketch_ranks_near_the_samples_are_reported():
    x = np.sort(np.random.default_rng(0).random(400))
    K = np.exp(-(x[:, None] - x[None]) ** 2 / (2 * 0.01 ** 2))
    with pytest.warns(RuntimeWarning, match=r"rank cap \(samples\).*raise samples"):
        H = hsspetsc.compress_sketch(K, samples=10, max_rank=10, leaf_size=25, probes=4)
    assert H.truncated and all(t["achieved"] == 1.0 for t in H.truncated)


def test_order_must_be_a_1d_permutation():
    K = np.eye(40) + 0.1
    with pytest.raises(ValueError, match="1-D"):
        hsspetsc.compress_sketch(K, samples=8, leaf_size=10,
                                 order=np.arange(40).reshape(2, 20))
    with pytest.raises(ValueError, match="'n_threads' parameter of compress"):
        hsspetsc.compress(K, leaf_size=10, n_threads=0)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", ["entries", "sketch", "shift"])
def test_defaults_with_psd_compensation_are_bitwise_identical_on_1_and_2_threads(path):
    """Every default (the PSD compensation's search included, which factors H~ a few
    times) gives the same bits on 1 and 2 threads, on a Gauss-Newton matrix that
    needs a compensation."""
    from hsspetsc.mlp import MLP, load
    from hsspetsc.mlp.gauss_newton import GaussNewton
    X, _ = load("digits", 300)
    model = MLP([64, 24, 64], activation="tanh", seed=0)
    out = []
    for nt in (1, 2):
        g = GaussNewton(model, X, X, damping=1e-10, n_threads=nt)
        if path == "entries":
            H = hsspetsc.compress(g, tol=1e-2, n_threads=nt)
        elif path == "sketch":
            H = hsspetsc.compress_sketch(g, samples=64, order=g.neuron_order(),
                                         n_threads=nt)
        else:
            H = hsspetsc.compress_sketch(g, samples=64, shift=1e-3, probes=8,
                                         order=g.neuron_order(), n_threads=nt)
        out.append(H)
    _assert_bitwise(*out)
    c = [H.stats()["compensation"] for H in out]
    assert c[0] == c[1] and (path == "shift" or c[0] > 0)
    v = np.random.default_rng(0).standard_normal(out[0].n)
    x = [H.factorize(shift=1e-3, n_threads=nt).solve(v, n_threads=nt)
         for H, nt in zip(out, (1, 2))]
    assert np.array_equal(*x)
