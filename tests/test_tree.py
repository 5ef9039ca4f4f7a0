import numpy as np
import pytest

import hsspetsc
from hsspetsc.compression.interactions import build_interactions
from hsspetsc.compression.neighbors import approximate_neighbors
from hsspetsc.compression.tree import Metric, build_tree


def _metric(src, kind="angle"):
    return Metric(src, kind, src.diagonal())


@pytest.mark.parametrize("n,m", [(1000, 64), (1024, 128), (777, 50), (130, 129)])
def test_tree_is_complete_and_balanced(gauss3d, n, m):
    X = np.random.default_rng(0).random((n, 2))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2)
    tree = build_tree(n, _metric(src), m, 0)
    assert np.array_equal(np.sort(tree.perm), np.arange(n))
    assert np.array_equal(tree.iperm[tree.perm], np.arange(n))
    leaves = tree.node_size[tree.first_leaf:]
    assert leaves.max() <= m and leaves.max() - leaves.min() <= 1
    for a in range(tree.first_leaf):
        l, r = 2 * a + 1, 2 * a + 2
        assert tree.node_size[l] + tree.node_size[r] == tree.node_size[a]
        assert tree.node_size[l] - tree.node_size[r] in (0, 1)
        assert tree.node_off[l] == tree.node_off[a]


@pytest.mark.parametrize("distance", ["angle", "kernel", "geometric"])
def test_split_separates_two_clusters(distance):
    """Two far-apart clusters, shuffled: the root split must separate them (an
    index-order split, the reference's bug, would not)."""
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 0.05, (200, 2)), rng.normal(3, 0.05, (200, 2))])
    label = np.r_[np.zeros(200), np.ones(200)]
    order = rng.permutation(400)
    X, label = X[order], label[order]
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)
    tree = build_tree(400, _metric(src, distance), 200, 0)
    left = label[tree.indices(1)]
    assert left.min() == left.max()


@pytest.mark.parametrize("distance", ["angle", "geometric"])
def test_neighbor_recall_is_measured_honestly(distance):
    X = np.random.default_rng(2).random((1500, 2))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.1)
    metric = _metric(src, distance)
    k = 16
    nb = approximate_neighbors(1500, metric, k, 64, 0)
    assert nb.index.shape == (1500, k)
    assert not np.any(nb.index == np.arange(1500)[:, None])       # no self
    # recall against brute force on all indices
    D = metric(np.arange(1500), np.arange(1500))
    np.fill_diagonal(D, np.inf)
    kth = np.partition(D, k - 1, axis=1)[:, k - 1]
    true_recall = np.mean(np.take_along_axis(D, nb.index, 1) <= kth[:, None] * (1 + 1e-12))
    assert nb.recall >= 0.8 or nb.iterations == 10
    assert abs(true_recall - nb.recall) < 0.15
    assert true_recall > 0.6
    ref = np.take_along_axis(D, nb.index, 1)
    np.testing.assert_allclose(nb.dist, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())


def _coverage(tree, inter):
    """How many times each (i, j) is covered by near and far pairs (both directions)."""
    n = tree.n
    C = np.zeros((n, n), dtype=int)
    for pairs in (inter.near_pairs, inter.far_pairs):
        for a, b in pairs:
            I, J = tree.indices(a), tree.indices(b)
            C[np.ix_(I, J)] += 1
            if a != b:
                C[np.ix_(J, I)] += 1
    return C


@pytest.mark.parametrize("budget", [0.0, 0.05, 0.3])
def test_near_and_far_cover_every_entry_once(budget):
    X = np.random.default_rng(4).random((600, 2))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.1)
    metric = _metric(src)
    tree = build_tree(600, metric, 20, 0)
    nb = approximate_neighbors(600, metric, 8, 20, 0)
    inter = build_interactions(tree, nb, budget)
    assert np.all(_coverage(tree, inter) == 1)
    nl = tree.n_leaves
    near = inter.near_leaves
    assert (near != near.T).nnz == 0
    assert np.all(near.diagonal())
    if budget == 0:
        assert inter.near_pairs.shape[0] == nl
        # plain HSS: far pairs are exactly the sibling pairs
        assert np.all(inter.far_pairs[:, 1] == inter.far_pairs[:, 0] + 1)
        assert np.all(inter.far_pairs[:, 0] % 2 == 1)
        assert inter.far_pairs.shape[0] == nl - 1
    else:
        per_leaf = np.asarray(near.sum(1)).ravel()
        assert per_leaf.min() >= int(np.ceil(budget * nl))
