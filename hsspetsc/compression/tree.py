"""The cluster tree's order: which indices go to which node.

The tree itself (:class:`~hsspetsc.matrix.layout.ClusterTree`: a complete, balanced
binary tree over a permutation, stored as flat arrays) is part of the matrix; this
module finds its permutation, from the source's entries or a given order.

Splits are computed a level at a time: for every node of the level,
p = the index farthest (summed distance) from a few sampled columns, q = the index
farthest from p, and the node's indices sorted by d(i, p) - d(i, q); the first half
goes left. Randomized trees (the neighbour search) draw p and q at random. The
distances of a level are read in one batch (:class:`Metric`), the choices and the
sorting run in one Cython ``prange`` over the level's nodes, and every random
choice comes from the node's own counter-based stream, so the tree does not depend
on the thread count.
"""

import numpy as np

from ..kernels.compression import (
    node_keys,
    pick_columns,
    reorder_level,
    row_sum_argmax,
    to_distance,
)
from ..kernels.kernel_matrix import KernelEvaluator
from ..matrix.layout import ClusterTree, tree_depth, tree_layout
from ..util.blocks import BlockReader, pointers, ranges
from ..util.threads import effective_n_threads

DISTANCES = ("angle", "kernel", "geometric")
SQDIST = 7                       # kernel code of the squared distance (kernels/kernel_matrix.pyx)


def phase_key(seed, phase, extra=0):
    """64-bit key of one random phase, from the user's seed (numpy SeedSequence)."""
    ss = np.random.SeedSequence([int(seed), int(phase), int(extra)])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


PHASE_TREE, PHASE_ANN, PHASE_ROWS, PHASE_SKETCH, PHASE_CHECK = 1, 2, 3, 4, 5


class Metric:
    """Distances between indices, computed from entries (or points).

    - ``angle``:  d(i, j) = 1 - K_ij^2 / (K_ii K_jj)   (needs K_ii > 0)
    - ``kernel``: d(i, j) = K_ii + K_jj - 2 K_ij
    - ``geometric``: squared Euclidean distance of ``source.points``.

    ``reader`` (a :class:`~hsspetsc.util.blocks.BlockReader` of the source) counts the
    entries read; the geometric metric reads points, not entries.
    """

    def __init__(self, source, kind, diag, reader=None, n_threads=None):
        self.kind = kind
        self.diag = np.ascontiguousarray(diag, dtype=np.float64)
        self.n = source.n
        if kind == "geometric":
            pts = np.ascontiguousarray(source.points, dtype=np.float64)
            ev = KernelEvaluator(pts, SQDIST, 1.0, 0.0, 1.0, np.zeros(0))
            self.reader = BlockReader(evaluator=ev, n_threads=n_threads)
        else:
            self.reader = reader if reader is not None else BlockReader(source, n_threads)
        self.n_threads = self.reader.n_threads

    def read(self, row_start, row_len, row_idx, col_start, col_len, col_idx):
        """Distances of a block list (see :mod:`hsspetsc.util.blocks`): (data, offsets)."""
        data, off = self.reader.read(row_start, row_len, row_idx, col_start, col_len,
                                     col_idx)
        if self.kind != "geometric" and data.size:
            to_distance(data, off, _i64(row_start), _i64(row_len), _i64(row_idx),
                        _i64(col_start), _i64(col_len), _i64(col_idx), self.diag,
                        0 if self.kind == "angle" else 1, self.n_threads)
        return data, off

    def __call__(self, I, J):
        """The distance block d(I, J) as a (len(I), len(J)) array."""
        I, J = _i64(I), _i64(J)
        z = np.zeros(1, np.int64)
        data, _ = self.read(z, [I.size], I, z, [J.size], J)
        return data.reshape(I.size, J.size)


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def tree_from_order(n, leaf_size, perm=None):
    """The balanced tree over a given order (``perm``, default the identity):
    bisection of that order, no entries read."""
    n_levels = tree_depth(n, leaf_size)
    off, size = tree_layout(n, n_levels)
    perm = np.arange(n, dtype=np.int64) if perm is None else _i64(perm).copy()
    iperm = np.empty_like(perm)
    iperm[perm] = np.arange(n, dtype=np.int64)
    return ClusterTree(n=n, n_levels=n_levels, perm=perm, iperm=iperm,
                       node_off=off, node_size=size)


def build_tree(n, metric, leaf_size, seed=0, n_samples=8, randomized=False, key=None,
               nodes_at=None):
    """Build the cluster tree by median splits under ``metric``, one level at a time.

    ``key``: the 64-bit random key of this tree (default: from ``seed``).
    ``nodes_at(level)``: split only these nodes of each level (a rank of a
    distributed construction: its ancestors and its subtree); ``perm`` is then final
    on their ranges only, and equal there to the full tree's."""
    n_levels = tree_depth(n, leaf_size)
    off, size = tree_layout(n, n_levels)
    perm = np.arange(n, dtype=np.int64)
    if key is None:
        key = phase_key(seed, PHASE_TREE)
    nt = effective_n_threads(metric.n_threads)
    for lev in range(n_levels):
        nodes = (np.arange(2 ** lev - 1, 2 ** (lev + 1) - 1, dtype=np.int64)
                 if nodes_at is None else np.asarray(nodes_at(lev), np.int64))
        lo, sz = off[nodes], size[nodes]
        keys = np.empty(nodes.size, dtype=np.uint64)
        node_keys(np.uint64(key), nodes, keys)

        def at_positions(x):
            """Per-node distances (concatenated) indexed by tree position, as the
            kernels read them; a whole level already is."""
            if nodes_at is None:
                return x
            full = np.zeros(n)
            full[ranges(lo, sz)] = x
            return full
        if randomized and nodes_at is not None:
            raise ValueError("build_tree: nodes_at is for the cluster tree only")
        if randomized:
            ncol = np.full(nodes.size, 2, dtype=np.int64)
        else:
            ncol = np.minimum(sz, n_samples).astype(np.int64)
        col_ptr = pointers(ncol)
        cols = np.empty(int(col_ptr[-1]), dtype=np.int64)
        pick_columns(lo, sz, perm, keys, col_ptr, cols, nt)
        if randomized:
            D, _ = metric.read(lo, sz, perm, col_ptr[:-1], ncol, cols)
            dp, dq = np.ascontiguousarray(D[0::2]), np.ascontiguousarray(D[1::2])
        else:
            D, Doff = metric.read(lo, sz, perm, col_ptr[:-1], ncol, cols)
            p = np.empty(nodes.size, dtype=np.int64)
            row_sum_argmax(D, Doff, lo, sz, ncol, perm, p, nt)
            one = np.ones(nodes.size, dtype=np.int64)
            idx = np.arange(nodes.size, dtype=np.int64)
            dp, _ = metric.read(lo, sz, perm, idx, one, p)
            dp = at_positions(dp)
            q = np.empty(nodes.size, dtype=np.int64)
            row_sum_argmax(dp, lo, lo, sz, one, perm, q, nt)
            dq, _ = metric.read(lo, sz, perm, idx, one, q)
            dq = at_positions(dq)
        failed = np.zeros(1, dtype=np.int64)
        reorder_level(perm, lo, sz, dp, dq, failed, nt)
        if failed[0]:
            raise MemoryError("hsspetsc: out of memory while splitting the tree.")
    iperm = np.empty_like(perm)
    iperm[perm] = np.arange(n, dtype=np.int64)
    return ClusterTree(n=n, n_levels=n_levels, perm=perm, iperm=iperm,
                       node_off=off, node_size=size)


def level_leaf_range(tree, nodes):
    """First and end leaf number (0-based among the leaves) under each node."""
    nodes = np.asarray(nodes, dtype=np.int64)
    lev = np.floor(np.log2(nodes + 1)).astype(np.int64)
    shift = tree.n_levels - lev
    pos = nodes - (2 ** lev - 1)
    return pos << shift, (pos + 1) << shift


__all__ = ["Metric", "build_tree", "tree_from_order", "phase_key"]
