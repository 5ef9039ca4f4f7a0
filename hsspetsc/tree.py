"""Cluster tree: a complete, balanced binary tree stored as flat arrays.

Node ``a`` has children ``2a+1`` and ``2a+2``; level ``l`` holds nodes
``2**l - 1 .. 2**(l+1) - 2``; the leaves are the last level. ``perm`` lists the
original indices in tree order, and node ``a`` owns ``perm[node_off[a] :
node_off[a] + node_size[a]]``. Sibling sizes differ by at most one.
"""
import math
from dataclasses import dataclass

import numpy as np

DISTANCES = ("angle", "kernel", "geometric")


class Metric:
    """Distances between indices, computed from entries (or points).

    - ``angle``:  d(i, j) = 1 - K_ij^2 / (K_ii K_jj)   (needs K_ii > 0)
    - ``kernel``: d(i, j) = K_ii + K_jj - 2 K_ij
    - ``geometric``: squared Euclidean distance of ``source.points``.
    """

    def __init__(self, source, kind, diag):
        self.source = source
        self.kind = kind
        self.diag = diag
        if kind == "geometric":
            self.points = np.ascontiguousarray(source.points, dtype=np.float64)
            self.sq = np.einsum("ij,ij->i", self.points, self.points)

    def __call__(self, I, J):
        I = np.asarray(I, dtype=np.int64)
        J = np.asarray(J, dtype=np.int64)
        if self.kind == "geometric":
            d = self.sq[I][:, None] + self.sq[J][None, :] - 2.0 * (self.points[I] @ self.points[J].T)
            return np.maximum(d, 0.0)
        K = self.source.entries(I, J)
        if self.kind == "angle":
            d = 1.0 - (K * K) / np.outer(self.diag[I], self.diag[J])
        else:
            d = self.diag[I][:, None] + self.diag[J][None, :] - 2.0 * K
        return np.maximum(d, 0.0)


def tree_depth(n, leaf_size):
    """Number of levels below the root so that every leaf holds <= leaf_size indices."""
    return 0 if n <= leaf_size else int(math.ceil(math.log2(n / leaf_size)))


def tree_layout(n, n_levels):
    """Offsets and sizes of all nodes of the balanced tree (left child gets the ceil)."""
    n_nodes = 2 ** (n_levels + 1) - 1
    off = np.zeros(n_nodes, dtype=np.int64)
    size = np.zeros(n_nodes, dtype=np.int64)
    size[0] = n
    for lev in range(n_levels):
        parents = np.arange(2 ** lev - 1, 2 ** (lev + 1) - 1)
        left, right = 2 * parents + 1, 2 * parents + 2
        size[left] = (size[parents] + 1) // 2
        size[right] = size[parents] // 2
        off[left] = off[parents]
        off[right] = off[parents] + size[left]
    return off, size


@dataclass
class ClusterTree:
    """Flat cluster tree. See the module docstring for the layout."""

    n: int
    n_levels: int
    perm: np.ndarray        # tree position -> original index
    iperm: np.ndarray       # original index -> tree position
    node_off: np.ndarray
    node_size: np.ndarray

    @property
    def n_nodes(self):
        return self.node_off.shape[0]

    @property
    def n_leaves(self):
        return 2 ** self.n_levels

    @property
    def first_leaf(self):
        return 2 ** self.n_levels - 1

    def level_nodes(self, lev):
        return np.arange(2 ** lev - 1, 2 ** (lev + 1) - 1)

    def level_of(self, a):
        return int(math.floor(math.log2(a + 1)))

    def indices(self, a):
        """Original indices owned by node ``a``."""
        o = self.node_off[a]
        return self.perm[o:o + self.node_size[a]]

    def leaf_of_original(self):
        """(n,) leaf number (0 .. n_leaves-1) of each original index."""
        leaf_off = self.node_off[self.first_leaf:]
        pos_leaf = np.searchsorted(leaf_off, np.arange(self.n), side="right") - 1
        return pos_leaf[self.iperm]


def _split_order(idx, metric, rng, n_samples, randomized):
    """Order of ``idx`` that puts the half closer to p (then q) first.

    p is the index farthest from a few sampled columns (by summed distance), q the
    index farthest from p; every index is projected on d(i, p) - d(i, q) and the
    split is the median of that projection. ``randomized`` picks p and q at random
    (the randomized trees of the neighbour search)."""
    size = idx.shape[0]
    if randomized:
        ip, iq = rng.choice(size, 2, replace=False)
        p, q = idx[ip], idx[iq]
        dp = metric(idx, [p])[:, 0]
    else:
        cols = idx[rng.choice(size, min(size, n_samples), replace=False)]
        p = idx[int(np.argmax(metric(idx, cols).sum(axis=1)))]
        dp = metric(idx, [p])[:, 0]
        q = idx[int(np.argmax(dp))]
    dq = metric(idx, [q])[:, 0]
    return np.argsort(dp - dq, kind="stable")


def build_tree(n, metric, leaf_size, rng, n_samples=8, randomized=False):
    """Build the cluster tree by recursive median splits, one level at a time."""
    n_levels = tree_depth(n, leaf_size)
    off, size = tree_layout(n, n_levels)
    perm = np.arange(n, dtype=np.int64)
    for lev in range(n_levels):
        for a in range(2 ** lev - 1, 2 ** (lev + 1) - 1):
            o, s = off[a], size[a]
            idx = perm[o:o + s]
            perm[o:o + s] = idx[_split_order(idx, metric, rng, n_samples, randomized)]
    iperm = np.empty_like(perm)
    iperm[perm] = np.arange(n, dtype=np.int64)
    return ClusterTree(n=n, n_levels=n_levels, perm=perm, iperm=iperm,
                       node_off=off, node_size=size)
