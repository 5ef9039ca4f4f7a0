"""Serial pieces of the distributed HSS matrix: who owns what, the neighbour search
restricted to one rank's indices, and the matrix on one rank (comm=None)."""
import os

import numpy as np
import pytest

import hsspetsc
from hsspetsc.compression.neighbors import approximate_neighbors
from hsspetsc.compression.tree import Metric, build_tree
from hsspetsc.matrix.distributed import DistributedHSSMatrix, Ownership, distribute
from hsspetsc.matrix.layout import tree_layout


@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 7, 8])
def test_ownership_partitions_the_tree_order(P):
    off, size = tree_layout(1000, 5)
    owners = [Ownership(off, size, 5, P, r) for r in range(P)]
    lo = [o.lo for o in owners]
    hi = [o.hi for o in owners]
    assert lo[0] == 0 and hi[-1] == 1000 and all(h == l for h, l in zip(hi[:-1], lo[1:]))
    # proportional: no rank holds more than twice its share of a balanced split
    assert max(h - l for l, h in zip(lo, hi)) <= 2 * 1000 / P + 64
    for o in owners:
        # the path goes from the subtree root to the root, the partners are in the
        # sibling group, and every rank of that group receives from someone
        assert (o.path[-1][0] == 0) if P > 1 else o.path == []
        for a, me, sib, src, dests in o.path:
            g0, g1 = o.group[sib]
            assert g0 <= src < g1 and all(g0 <= d < g1 for d in dests)
    for r in range(P):
        for a, me, sib, src, dests in owners[r].path:
            # symmetric: the rank I receive from sends to me
            assert r in owners[src].path[[e[0] for e in owners[src].path].index(a)][4]


def test_too_many_ranks():
    off, size = tree_layout(100, 1)
    with pytest.raises(ValueError, match="leaves"):
        Ownership(off, size, 1, 3, 0)


def test_neighbours_of_some_indices_equal_the_full_search():
    X = np.random.default_rng(0).standard_normal((3000, 3))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)
    m = Metric(src, "angle", src.diagonal())
    full = approximate_neighbors(3000, m, 16, 64, seed=3)
    tree = build_tree(3000, m, 64, seed=3)
    mine = np.zeros(3000, bool)
    mine[tree.perm[:1000]] = True
    part = approximate_neighbors(3000, m, 16, 64, seed=3, mine=mine,
                                 total=lambda a: a * 1.0)
    assert np.array_equal(part.index[mine], full.index[mine])
    assert np.array_equal(part.dist[mine], full.dist[mine])


def test_one_rank_without_mpi_equals_the_serial_matrix():
    X = np.random.default_rng(1).standard_normal((1500, 3))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)
    H = hsspetsc.compress(src, leaf_size=64, tol=1e-6)
    for D in (distribute(H, None),):
        assert isinstance(D, DistributedHSSMatrix) and D.n_local == 1500
        W = np.random.default_rng(2).standard_normal((1500, 2))
        ref = (H @ W)[D.local_indices]
        assert np.abs(D.matvec(W[D.local_indices]) - ref).max() <= 1e-13 * np.abs(ref).max()
        x = D.factorize(1e-3).solve(W[D.local_indices])
        xs = H.factorize(1e-3).solve(W)[D.local_indices]
        assert np.abs(x - xs).max() <= 1e-12 * np.abs(xs).max()
    with pytest.raises(ValueError, match="rows"):
        D.matvec(np.ones(1499))
    with pytest.raises(ValueError, match="NaN"):
        D.matvec(np.full(1500, np.nan))


def test_serial_matrix_is_the_one_rank_case_bit_for_bit():
    """One implementation: the serial matrix and its one-rank distributed copy run
    the same passes, factorization and solve, so they agree to the last bit (a
    second implementation would differ by its summation order)."""
    X = np.random.default_rng(3).standard_normal((1200, 3))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)
    H = hsspetsc.compress(src, leaf_size=64, tol=1e-7)
    assert H.stats()["compensation"] > 0 and H.stats()["levels"] >= 3
    D = distribute(H, None)
    W = np.random.default_rng(4).standard_normal((1200, 3))
    rows = D.local_indices
    assert np.array_equal(D.matvec(W[rows]), (H @ W)[rows])
    assert np.array_equal(D.diagonal(), H.diagonal()[rows])
    assert D.max_diagonal() == H.max_diagonal() and D.norm() > 0
    F, FD = H.factorize(1e-4), D.factorize(1e-4)
    assert type(FD) is type(F)
    # the base says what a matrix must provide: a layout and a compensation
    with pytest.raises(TypeError, match="abstract"):
        hsspetsc.matrix.hss.HSSBase()
    assert np.array_equal(FD.solve(W[rows]), F.solve(W)[rows])
    assert FD.logdet() == F.logdet()
    # and the answer is right: a dense solve of the same operator
    A = 1e-4 * np.eye(1200) + H.to_dense()
    x = np.linalg.solve(A, W)
    assert np.abs(F.solve(W) - x).max() <= 1e-8 * np.abs(x).max()


def test_a_distributed_factorization_is_not_saved_but_refused_clearly(tmp_path):
    X = np.random.default_rng(5).standard_normal((600, 3))
    H = hsspetsc.compress(hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0),
                          leaf_size=64, tol=1e-5)
    with pytest.raises(TypeError, match="distributed matrix has no file format"):
        distribute(H, None).factorize(1e-3).save(tmp_path / "f")
    with pytest.raises(TypeError, match="expected an HSSMatrix"):
        hsspetsc.matrix.io.save(distribute(H, None), tmp_path / "d")
    assert os.listdir(tmp_path) == []
    F = hsspetsc.load(H.factorize(1e-3).save(tmp_path / "f"))
    assert F.shift == 1e-3 and isinstance(F.H, hsspetsc.HSSMatrix)


@pytest.mark.parametrize("P", [2, 3, 5])
def test_tree_of_one_rank_equals_the_full_tree_on_its_range(P):
    """A rank splits its ancestors and its subtree only: its range of the order is
    the full tree's, bit for bit."""
    from hsspetsc.compression.driver import _level_nodes
    from hsspetsc.matrix.layout import tree_depth
    X = np.random.default_rng(7).standard_normal((2400, 3))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.8)
    m = Metric(src, "angle", src.diagonal())
    full = build_tree(2400, m, 48, 0)
    L = tree_depth(2400, 48)
    for r in range(P):
        own = Ownership(*tree_layout(2400, L), L, P, r)
        lv = own.subtree_levels(L)
        t = build_tree(2400, m, 48, 0, nodes_at=lambda lev: _level_nodes(own, lev, lv)[0])
        assert np.array_equal(t.perm[own.lo:own.hi], full.perm[own.lo:own.hi])
