"""The shape of an HSS matrix: the cluster tree and the nested bases, as flat arrays.

The cluster tree is a complete, balanced binary tree: node ``a`` has children
``2a+1`` and ``2a+2``; level ``l`` holds nodes ``2**l - 1 .. 2**(l+1) - 2``; the
leaves are the last level. ``perm`` lists the original indices in tree order, and
node ``a`` owns ``perm[node_off[a] : node_off[a] + node_size[a]]``. Sibling sizes
differ by at most one (:func:`tree_layout`). How the order is found is the
construction's business (:mod:`hsspetsc.compression.tree`); the matrix needs only
this shape, and the bases (:class:`Bases`: per node a skeleton and an
interpolation matrix), which the matrix is stored with and read back from a file.
"""
import math
from dataclasses import dataclass

import numpy as np


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


class TreeShape:
    """The tree's shape without its order: what the matrix and its factorization
    need of a :class:`ClusterTree` (N, the levels, each node's offset and size; a
    distributed matrix keeps only this and its own rows)."""

    def __init__(self, n, n_levels, node_off, node_size):
        self.n, self.n_levels = n, n_levels
        self.node_off, self.node_size = node_off, node_size

    @property
    def n_nodes(self):
        return self.node_off.shape[0]

    @property
    def first_leaf(self):
        return 2 ** self.n_levels - 1


@dataclass(frozen=True)
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

    def leaf_bounds(self):
        """(n_leaves + 1,) tree positions where the leaves start, then n."""
        return np.r_[self.node_off[self.first_leaf:], self.n].astype(np.int64)

    def leaf_of_original(self):
        """(n,) leaf number (0 .. n_leaves-1) of each original index."""
        pos_leaf = np.searchsorted(self.leaf_bounds()[:-1], np.arange(self.n),
                                   side="right") - 1
        return pos_leaf[self.iperm]


@dataclass(frozen=True)
class Bases:
    """Skeletons and interpolation matrices of all nodes, flat in node order.

    Node a: rank[a] skeleton indices ``skel_idx[skel_ptr[a]:skel_ptr[a+1]]``
    (original indices) at positions ``skel_pos[...]`` among its columns, and
    P (rank x ncols, row-major) at ``proj[proj_ptr[a]:proj_ptr[a+1]]``. The root
    has rank 0. ``truncated``: nodes whose rank hit max_rank before tol (node,
    level, rank, achieved relative error of the dropped part)."""

    rank: np.ndarray
    skel_ptr: np.ndarray
    skel_idx: np.ndarray
    skel_pos: np.ndarray
    proj_ptr: np.ndarray
    proj: np.ndarray
    truncated: tuple
