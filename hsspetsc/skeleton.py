"""Skeletonization by interpolative decomposition, bottom-up with nested bases.

Columns of node a: its indices at a leaf, the union of its children's skeletons
above. Rows: the columns' neighbours outside a and outside its near list, closest
first (up to 3/4 of them), then uniform random rows from the same set,
max(4 #cols, 4 m) in all. (Twice the 2x oversampling of the reference: on K02 it
takes the matvec error from 9e-4 to 2e-5 at tol 1e-5 for 30% more time.)
The sampled block is factored by QR with column pivoting; the rank r is the first
k with |R_kk| < tol |R_11| (capped by max_rank). Skeleton = the r pivot columns;
P = [I, R11^-1 R12] (in pivot order) so that K(:, cols) ~= K(:, skel) P.
"""
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla


ROW_FACTOR = 4      # sampled rows per column (see module docstring)


@dataclass
class Skeletons:
    rank: np.ndarray                  # (n_nodes,) int64; the root has rank 0
    skel: list                        # per node: original indices (rank,)
    proj: list                        # per node: P (rank x ncols) row-major
    pos: list                         # per node: skeleton positions among its columns
    truncated: list = field(default_factory=list)   # nodes capped at max_rank


def pivoted_qr_r(B):
    """R and the column pivots of the pivoted QR of B (rows x cols, cols >= 1).

    A tall B gets an unpivoted (BLAS-3) QR first; the pivoted QR of its R makes the
    same choices as that of B (column norms are kept) at a fraction of the cost."""
    if B.shape[0] > B.shape[1] + B.shape[1] // 4:
        B = sla.qr(B, mode="r", check_finite=False)[0][:B.shape[1]]
    return sla.qr(B, mode="r", pivoting=True, check_finite=False)


def interpolation_matrix(R, piv, r, ncols):
    """P (r x ncols) with B ~= B[:, piv[:r]] P, from the pivoted QR of B."""
    P = np.zeros((r, ncols))
    P[np.arange(r), piv[:r]] = 1.0
    if 0 < r < ncols:
        P[:, piv[r:]] = sla.solve_triangular(R[:r, :r], R[:r, r:], check_finite=False)
    return P


def interpolative_decomposition(B, tol, max_rank):
    """Adaptive ID of B (rows x cols): returns (pivot columns, P, rank, achieved).

    ``achieved`` is |R_{r+1,r+1}| / |R_11| (0 when the ID is exact), the relative
    size of the first dropped column."""
    ncols = B.shape[1]
    if B.size == 0 or ncols == 0:
        return np.zeros(0, np.int64), np.zeros((0, ncols)), 0, 0.0
    R, piv = pivoted_qr_r(B)
    d = np.abs(np.diagonal(R))
    if d.size == 0 or d[0] == 0.0:
        return np.zeros(0, np.int64), np.zeros((0, ncols)), 0, 0.0
    below = np.nonzero(d < tol * d[0])[0]
    r_tol = int(below[0]) if below.size else d.size
    r = min(r_tol, max_rank)
    achieved = float(d[r] / d[0]) if r < d.size else 0.0
    return piv[:r].astype(np.int64), interpolation_matrix(R, piv, r, ncols), r, achieved


class _RowSampler:
    """Rows outside a node and its near list: neighbours first, then uniform."""

    def __init__(self, tree, nbrs, inter, rng):
        self.tree = tree
        self.nbrs = nbrs
        self.inter = inter
        self.rng = rng
        self.leaf_of = tree.leaf_of_original()
        self.leaf_off = tree.node_off[tree.first_leaf:]
        self.leaf_size = tree.node_size[tree.first_leaf:]
        self.nbr_share = 0.75

    def rows(self, a, n_rows):
        tree = self.tree
        excl_leaves = self.inter.excluded_leaves(tree, a)
        excluded = np.zeros(tree.n_leaves, dtype=bool)
        excluded[excl_leaves] = True
        n_allowed = tree.n - int(self.leaf_size[excl_leaves].sum())
        if n_allowed <= n_rows:   # take every allowed row
            keep = ~excluded
            pos = np.concatenate([np.arange(o, o + s) for o, s in
                                  zip(self.leaf_off[keep], self.leaf_size[keep])]
                                 or [np.zeros(0, np.int64)])
            return tree.perm[pos]
        chosen = np.zeros(0, dtype=np.int64)
        n_nbr_max = int(self.nbr_share * n_rows)
        if self.nbrs is not None and self.nbrs.index.shape[1] > 0:
            members = tree.indices(a)
            cand = self.nbrs.index[members].ravel()
            cd = self.nbrs.dist[members].ravel()
            ok = cand >= 0
            cand, cd = cand[ok], cd[ok]
            ok = ~excluded[self.leaf_of[cand]]
            cand, cd = cand[ok], cd[ok]
            if cand.size:
                order = np.argsort(cd, kind="stable")
                cand = cand[order]
                _, first = np.unique(cand, return_index=True)
                chosen = cand[np.sort(first)][:n_nbr_max]
        need = n_rows - chosen.size
        taken = np.zeros(tree.n, dtype=bool)
        taken[chosen] = True
        extra = []
        for _ in range(20):
            if need <= 0:
                break
            pos = self.rng.integers(0, tree.n, size=2 * need + 16)
            idx = tree.perm[pos]
            idx = idx[~excluded[self.leaf_of[idx]] & ~taken[idx]]
            idx = idx[np.sort(np.unique(idx, return_index=True)[1])][:need]
            taken[idx] = True
            extra.append(idx)
            need -= idx.size
        return np.concatenate([chosen] + extra)


def skeletonize(tree, source, nbrs, inter, tol, max_rank, rng):
    """Skeletons and interpolation matrices of every non-root node."""
    n_nodes = tree.n_nodes
    rank = np.zeros(n_nodes, dtype=np.int64)
    skel = [np.zeros(0, np.int64) for _ in range(n_nodes)]
    proj = [np.zeros((0, 0)) for _ in range(n_nodes)]
    pos = [np.zeros(0, np.int64) for _ in range(n_nodes)]
    truncated = []
    sampler = _RowSampler(tree, nbrs, inter, rng)
    m = int(tree.node_size[tree.first_leaf:].max())
    for lev in range(tree.n_levels, 0, -1):
        for a in tree.level_nodes(lev):
            if lev == tree.n_levels:
                cols = tree.indices(a)
            else:
                cols = np.concatenate([skel[2 * a + 1], skel[2 * a + 2]])
            if cols.size == 0:
                proj[a] = np.zeros((0, 0))
                continue
            rows = sampler.rows(a, ROW_FACTOR * max(cols.size, m))
            B = source.entries(rows, cols)
            piv, P, r, achieved = interpolative_decomposition(B, tol, max_rank)
            if r == max_rank and achieved >= tol:
                truncated.append({"node": int(a), "level": int(lev), "rank": int(r),
                                  "achieved": achieved})
            rank[a] = r
            skel[a] = cols[piv]
            pos[a] = piv
            proj[a] = np.ascontiguousarray(P)
    return Skeletons(rank=rank, skel=skel, proj=proj, pos=pos, truncated=truncated)
