"""Skeletons from entries: interpolative decompositions, bottom-up, nested bases.

Columns of node a: its indices at a leaf, the union of its children's skeletons
above. Rows: the columns' neighbours outside a and outside its near list, closest
first (up to 3/4 of them), then uniform random rows from the same set;
ROW_FACTOR x max(#cols, m) rows in all, or every allowed row when there are fewer.
(Fewer rows, a few times max_rank, were cheaper but made the pivots of capped
nodes flip under round-off.) The
sampled block K(rows, cols) is factored by a QR and a pivoted QR of its R; the
rank r is the smallest k whose dropped part |R[k:, k:]|_F is at most tol |R_11|
(capped by max_rank). Skeleton = the r pivot columns; P = [I, R11^-1 R12] (in
pivot order) so that K(:, cols) ~= K(:, skel) P.

Per level: one Cython ``prange`` samples the rows of every node (O(rows +
cols * k) per node, its own random stream), the sampled blocks are read in
memory-bounded chunks of nodes (one batched read per chunk), and one ``prange``
factors them. Level buffers are sized by their caps up front and compacted once.
"""
import numpy as np
import scipy.sparse as sp

from ..kernels.compression import IDs, RowPool, column_ids, node_keys, sample_rows
from ..util.blocks import chunks, exclusive_cumsum, pointers, ranges
from .params import shift_thresholds
from .tree import PHASE_ROWS, level_leaf_range, phase_key

ROW_FACTOR = 4           # sampled rows per column (4: eps2 2e-5 on K02 at tol 1e-5)
NBR_SHARE = 0.75         # at most this share of the rows from neighbours
CHUNK_BYTES = 256 * 2 ** 20


class LevelIDs:
    """Results of the IDs of one level, compacted (node order within the level)."""

    def __init__(self, lev, rank, achieved, cols_ptr, cols_idx, pos_buf, pos_off,
                 proj_buf, proj_off, ncols):
        self.lev = lev
        self.rank = rank
        self.achieved = achieved
        self.ncols = ncols
        self.pos = pos_buf[ranges(pos_off, rank)]
        self.proj = proj_buf[ranges(proj_off, rank * ncols)]
        self.skel = cols_idx[cols_ptr[:-1].repeat(rank) + self.pos]
        self.skel_ptr = pointers(rank)


def check_alloc(ok, what):
    """A kernel reports a failed malloc by a negative count."""
    if not ok:
        raise MemoryError(f"hsspetsc: out of memory in {what}; use fewer threads, a "
                          f"smaller leaf_size or max_rank.")


def _allowed_rows(near, leaf_sizes, llo, lhi, n):
    """Rows outside each node's leaves [llo, lhi) and outside every leaf near one of
    them: n minus the sizes of the leaves the node's leaves are near (the near
    relation contains the identity)."""
    nl = leaf_sizes.size
    counts = lhi - llo
    under = sp.csr_matrix((np.ones(int(counts.sum())),
                           (np.repeat(np.arange(llo.size), counts), ranges(llo, counts))),
                          shape=(llo.size, nl))
    touched = (under @ near.astype(np.float64)).tocsr()
    touched.data[:] = 1.0
    return n - np.asarray(touched @ leaf_sizes.astype(np.float64)).ravel().astype(np.int64)


def id_caps(ncols, n_rows, max_rank):
    """Room per node for the skeleton positions and for P."""
    cap = np.minimum(np.minimum(ncols, n_rows), max_rank).astype(np.int64)
    return cap, cap * ncols


class RankBudget:
    """The rank cap of each level, and what sets it ("max_rank" or "memory").

    With ``max_rank=None`` ranks may grow until tol is met, as long as H~ fits in
    ``memory`` bytes. Bottom-up, the levels not yet built share what is left: a node
    stores P (r x 2r at most) and about one r x r coupling, ~3 r^2 doubles, so level
    l may use the r with which it and every level above it fit, at that rank, in
    the bytes left. The near blocks are fixed by the tree and counted first."""

    def __init__(self, tree, inter, max_rank, memory):
        ns = tree.node_size
        a, b = inter.near_pairs[:, 0], inter.near_pairs[:, 1]
        self.left = memory - 8.0 * float(np.sum(ns[a] * ns[b]))
        self.max_rank = max_rank
        self.memory = memory

    def cap(self, lev):
        """(cap, cause) for the nodes of level ``lev`` (levels above: 2^lev - 2 nodes)."""
        nodes = 2 ** (lev + 1) - 2
        room = max(self.left, 0.0) / (8.0 * 3 * nodes)
        r_mem = 2 ** 31 - 1 if room >= 2.0 ** 62 else max(1, int(np.sqrt(room)))
        if self.max_rank is not None and self.max_rank <= r_mem:
            return int(self.max_rank), "max_rank"
        return min(r_mem, 2 ** 31 - 1), "memory"

    def spend(self, rank, ncols, total=None):
        """Charge a finished level: its P and (half of) its couplings. ``rank``,
        ``ncols``: of the nodes this rank counts; ``total``: their sum over the
        ranks (a communicator's ``sum``; None with one process)."""
        spent = 8.0 * float(np.sum(rank * ncols) + np.sum(rank.astype(float) ** 2))
        self.left -= spent if total is None else total(spent)


class LevelSampler:
    """The interpolative decompositions of a set of nodes of one level (see the
    module docstring): row sampling, batched reads of the sampled blocks, IDs. Holds
    what every level shares (random key, leaf layout, near lists, neighbours); the
    serial construction calls it with whole levels, a rank of the distributed one
    with its own nodes (the result of a node does not depend on the others)."""

    def __init__(self, tree, reader, nbrs, inter, tol, seed, n_threads, shift=None):
        n = tree.n
        self.tree, self.reader, self.tol, self.n_threads = tree, reader, tol, n_threads
        self.shift = shift
        self.key = np.uint64(phase_key(seed, PHASE_ROWS))
        self.m = int(tree.node_size[tree.first_leaf:].max())
        self.leaf_off = tree.leaf_bounds()
        self.leaf_sizes = np.diff(self.leaf_off)
        self.near = inter.near_leaves
        self.has_near = self.near.nnz > tree.n_leaves
        self.near_ptr = self.near.indptr.astype(np.int64)
        self.near_idx = self.near.indices.astype(np.int64)
        if nbrs is not None and nbrs.index.shape[1] > 0:
            self.nbr_idx, self.nbr_dist = nbrs.index, nbrs.dist
        else:
            self.nbr_idx, self.nbr_dist = np.zeros((n, 0), np.int64), np.zeros((n, 0))
        self.pool = RowPool(tree.perm, tree.iperm, self.leaf_off, self.near_ptr,
                            self.near_idx, self.has_near, self.nbr_idx, self.nbr_dist,
                            NBR_SHARE)

    def ids(self, lev, nodes, cols_ptr, cols_idx, cap):
        """LevelIDs of ``nodes`` (of level ``lev``), whose columns are
        ``cols_idx[cols_ptr[t]:cols_ptr[t+1]]``, ranks capped at ``cap``."""
        tree, reader, n = self.tree, self.reader, self.tree.n
        nn = nodes.size
        ncols = np.diff(cols_ptr)
        n_rows = np.where(ncols > 0, ROW_FACTOR * np.maximum(ncols, self.m), 0)
        keys = np.empty(nn, dtype=np.uint64)
        node_keys(self.key, nodes, keys)
        lo = tree.node_off[nodes]
        hi = lo + tree.node_size[nodes]
        llo, lhi = level_leaf_range(tree, nodes)
        n_allowed = (_allowed_rows(self.near, self.leaf_sizes, llo, lhi, n)
                     if self.has_near else n - (hi - lo))
        rows_off = exclusive_cumsum(n_rows)
        rows = np.empty(int(n_rows.sum()), dtype=np.int64)
        rows_cnt = np.empty(nn, dtype=np.int64)
        nt = min(self.n_threads, nn)
        mark = np.zeros((nt, n), dtype=np.int8)
        sample_rows(lo, hi, llo, lhi, cols_ptr, cols_idx, n_rows.astype(np.int64),
                    n_allowed.astype(np.int64), keys, self.pool, rows_off, rows, rows_cnt,
                    mark, nt)
        del mark
        check_alloc(rows_cnt.min() >= 0, "the row sampling")
        atol = shift_thresholds(self.tol, self.shift, tree.n_levels,
                                np.sqrt(rows_cnt / np.maximum(n_allowed, 1)))
        pos_cap, proj_cap = id_caps(ncols, rows_cnt, cap)
        pos_off, proj_off = exclusive_cumsum(pos_cap), exclusive_cumsum(proj_cap)
        pos_buf = np.empty(int(pos_cap.sum()), dtype=np.int64)
        proj_buf = np.empty(int(proj_cap.sum()))
        rank = np.zeros(nn, dtype=np.int64)
        achieved = np.zeros(nn)
        for c0, c1 in chunks(rows_cnt * ncols, CHUNK_BYTES // 8):
            # K(cols, rows) row-major is K(rows, cols) column-major (symmetry)
            B, Boff = reader.read(cols_ptr[c0:c1], ncols[c0:c1], cols_idx,
                                  rows_off[c0:c1], rows_cnt[c0:c1], rows)
            ids = IDs(self.tol, cap, atol[c0:c1] if atol.size else atol, rank[c0:c1],
                      achieved[c0:c1], proj_buf, proj_off[c0:c1], pos_buf, pos_off[c0:c1])
            column_ids(B, Boff, rows_cnt[c0:c1], ncols[c0:c1], ids, self.n_threads)
        check_alloc(rank.min() >= 0, "the interpolative decompositions")
        return LevelIDs(lev, rank, achieved, cols_ptr, cols_idx, pos_buf, pos_off,
                        proj_buf, proj_off, ncols)
