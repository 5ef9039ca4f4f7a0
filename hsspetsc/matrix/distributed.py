"""Memory-distributed HSS matrices: each MPI rank owns a subtree.

Ownership. The ranks of a communicator split the tree top-down: a node shared by
ranks [lo, hi) gives its left child round(P_g * n_left / n) of them (at least one
each side), so any P >= 1 works (P = 3: ranks 0, 1 share the left half, rank 2 owns
the right half). A rank owns the subtree where its group shrinks to itself, i.e. a
contiguous range of the tree order; the nodes above it (its *ancestors*) are shared
by the ranks below them, and each of those ranks keeps a copy of their small blocks
(interpolation matrix, sibling coupling). What a rank stores:

- its subtree: leaf blocks, interpolation matrices, sibling couplings;
- for each of its ancestors (at most about log2 P of them): P and the coupling of
  its two children;
- the ranks of its ancestors' other children (its *halo*);
- per-node bookkeeping arrays over the whole tree (O(N / leaf_size) integers).

Matvec (``H.matvec(X)``, X the rank's rows in tree order). Upward pass in the
subtree; then, one ancestor at a time from the bottom, the rank sends its child's
skeleton weights (r x nrhs) to a partner in the sibling group and receives the
sibling's: both can now form the ancestor's weights. The downward pass needs no
messages (every rank of a group computes the group's incoming skeleton
potentials alike). Per matvec and rank: one message each way per ancestor,
2 r nrhs doubles per level, about 2 r nrhs log2 P in all.

Factorization and solve follow the same pattern: the subtree is eliminated level by
level, then each ancestor is eliminated by every rank of its group after swapping
the children's Schur complements (r x r); the root's small block is factored by
everyone. A solve swaps r x nrhs blocks on the way up and none on the way down.

There is one implementation of all this, :class:`~hsspetsc.matrix.hss.HSSBase` and
:class:`~hsspetsc.matrix.factor.HSSFactorization`: the serial HSSMatrix is its case
P = 1 (no ancestors to share). The arithmetic per node is therefore the serial one
in the same order: matvec and solve equal the serial matrix's to round-off on any
number of ranks.
"""
import copy

import numpy as np

from ..mpi.comm import Comm
from ..mpi.ownership import Ownership
from ..util.blocks import exclusive_cumsum, pointers, ranges
from ..util.validation import as_block
from .factor import HSSFactorization
from .hss import BlockSet, HSSBase, _Caches
from .layout import TreeShape, tree_layout


class DistributedHSSMatrix(HSSBase):
    """An HSS matrix (budget 0) stored across the ranks of an MPI communicator.

    Built by ``hsspetsc.compress(..., comm=comm)``, ``compress_sketch(...,
    comm=comm)`` or :func:`distribute` (from a serial HSSMatrix). Collective: every
    rank calls every method (matvec, factorize, solve, stats, norm) alike.

    Vectors are distributed in tree order: rank p holds the rows
    ``H.local_indices`` (original indices, ``H.n_local`` of them), rows
    ``H.offsets[p]:H.offsets[p+1]`` of the tree order. ``H.matvec(X)`` takes and
    returns this rank's rows (shape (n_local,) or (n_local, k)); nothing of length
    N is gathered. The PETSc layer (:func:`hsspetsc.petsc.as_petsc_mat`) maps PETSc
    Vecs in the user's order to these rows with one scatter.

    The matvec, factorization, solve, log-determinant, diagonal and norm are
    :class:`~hsspetsc.matrix.hss.HSSBase`'s, the same code as the serial HSSMatrix's; this
    class adds the rows of a rank and its figures.
    """

    def __init__(self, *, comm, n, n_levels, rank, ncols, skel_ptr, skel_idx, skel_pos,
                 proj_ptr, proj, leaf_data, leaf_off, far_pairs, far_off, far_data,
                 local_indices, compensation, params, info):
        comm = Comm.of(comm)
        node_off, node_size = tree_layout(n, n_levels)
        own = Ownership(node_off, node_size, n_levels, comm.size, comm.rank)
        leaves = own.subtree_levels(n_levels)[n_levels]
        self._set_core(
            tree=TreeShape(int(n), int(n_levels), node_off, node_size), own=own, comm=comm,
            local_indices=local_indices, rank=rank, ncols=ncols, skel_ptr=skel_ptr,
            skel_idx=skel_idx, skel_pos=skel_pos, proj_ptr=proj_ptr, proj=proj,
            near=BlockSet(np.column_stack([leaves, leaves]), np.asarray(leaf_off, np.int64),
                          np.ascontiguousarray(leaf_data, dtype=np.float64)),
            far=BlockSet(np.asarray(far_pairs, dtype=np.int64).reshape(-1, 2),
                         np.asarray(far_off, dtype=np.int64),
                         np.ascontiguousarray(far_data, dtype=np.float64)),
            couplings=BlockSet.empty())
        self.offsets = own.offsets
        self.compensation = (None if compensation is None
                             else np.ascontiguousarray(compensation, dtype=np.float64))
        self.factor_compensation = None
        self.params = dict(params)
        self._info = dict(info)
        self.truncated = list(self._info.get("truncated_nodes", []))

    def compensation_rows(self, factored=False):
        return self.compensation            # stored as this rank's rows

    def with_info(self, info):
        """The same matrix (arrays and message counts shared) with ``info``."""
        out = copy.copy(self)
        out._info = dict(info)
        out.truncated = list(out._info.get("truncated_nodes", []))
        return out

    def with_compensation(self, compensation, info, factor_only=False):
        """A new matrix: this one plus diag(``compensation``) (a user-order vector
        of length N, the same on every rank; arrays shared)."""
        if factor_only:
            raise ValueError("with_compensation: a distributed matrix has no near "
                             "field, so there is no factored part of its own.")
        out = self.with_info(info)
        out.compensation = self.tree_rows(np.asarray(compensation, dtype=np.float64))
        out._caches = _Caches()              # its norm is another
        return out

    def matvec(self, X, n_threads=None):
        """This rank's rows of H~ X, for this rank's rows X (tree order; shape
        (n_local,) or (n_local, k)). Collective."""
        return super().matvec(X, n_threads)

    def _rows_in(self, X, what, where):
        """X as a C-contiguous (n_local, k) block (this rank's share of the tree
        order: ``H.local_indices``); agreed on every rank, so one rank's bad input
        raises on all of them and none is left waiting."""
        err, vec, X2, k = None, False, None, -1
        try:
            _, X2, vec = as_block(X, self.n_local, what, f"{where} on rank {self.rank_id}")
            X2 = np.ascontiguousarray(X2)
            k = X2.shape[1]
        except (ValueError, TypeError) as exc:
            err = exc
        ks = self.comm.gather(k, err)
        if len(set(ks)) != 1:
            raise ValueError(f"{where}: the ranks pass different numbers of columns "
                             f"({ks}).")
        return X2, (lambda U: U[:, 0] if vec else U)

    def diagonal(self):
        """This rank's rows of the diagonal of H~ (tree order)."""
        return self._diagonal_rows()

    # ---------------------------------------------------------------- figures
    def _local_bytes(self):
        data = self.proj.nbytes + self.near_data.nbytes + self.far_data.nbytes
        index = sum(x.nbytes for x in (
            self.local_indices, self.rank, self.ncols, self.skel_ptr, self.skel_idx,
            self.skel_pos, self.proj_ptr, self.diag_blk, self.near_ptr, self.near_src,
            self.near_blk, self.near_trans, self.far_pairs, self.far_pair_off,
            self.far_ptr, self.far_src, self.far_blk, self.far_trans,
            self.tree.node_off, self.tree.node_size, self.node_off_local))
        if self.compensation is not None:
            data += self.compensation.nbytes
        return int(data), int(index)

    def stats(self):
        """Figures of this rank and of all ranks (collective).

        ``stored_bytes``/``data_bytes``: this rank's; ``total_stored_bytes`` and
        ``max_stored_bytes``: the sum and the largest over the ranks; ``comm``: this
        rank's messages and bytes per operation so far (``calls``, ``*_sent``,
        ``*_received``) and ``comm_model``: the bytes one matvec with one right-hand
        side should exchange (2 r 8 per ancestor, r the ranks of the children)."""
        data, index = self._local_bytes()
        per_rank = self.comm.gather((data + index, data))
        totals = [t for t, _ in per_rank]
        rk = self.rank
        model = sum(8 * int(rk[me] * len(ent[4]) + rk[sib]) for ent in self.own.path
                    for me, sib in [(ent[1], ent[2])])
        out = {
            "N": self.n, "levels": self.n_levels, "ranks": self.size,
            "rank": self.rank_id, "n_local": int(self.n_local),
            "subtree_root": self.own.sub, "shared_levels": len(self.own.path),
            "stored_bytes": data + index, "data_bytes": data,
            "total_stored_bytes": int(sum(totals)), "max_stored_bytes": int(max(totals)),
            "min_stored_bytes": int(min(totals)),
            "per_rank_stored_bytes": totals,
            "dense_bytes": 8 * self.n * self.n,
            "comm": {op: dict(c) for op, c in self._x.counts.items()},
            "comm_model": {"matvec_bytes_per_rhs": model,
                           "matvec_messages": sum(1 + len(e[4]) for e in self.own.path)},
            "params": dict(self.params),
        }
        out.update(self._info)
        return out

    def __repr__(self):
        return (f"DistributedHSSMatrix(N={self.n}, levels={self.n_levels}, "
                f"rank {self.rank_id} of {self.size}: rows {self.own.lo}:{self.own.hi} "
                f"of the tree order, subtree {self.own.sub}, "
                f"{sum(self._local_bytes()) / 1e6:.2f} MB here)")


DistributedFactorization = HSSFactorization   # the same algorithm over P ranks


# --------------------------------------------------------------------------------
def _present(own, n_levels):
    """(subtree nodes, ancestors, halo) of this rank, as sorted int64 arrays."""
    lv = own.subtree_levels(n_levels)
    sub = np.concatenate([lv[lev] for lev in sorted(lv)])
    return (sub, np.asarray(sorted(own.ancestors), np.int64),
            np.asarray(sorted(own.halo), np.int64))


def local_parts(n, n_levels, own, rank, skel_ptr, skel_idx, skel_pos, proj_ptr,
                proj, leaf_off, leaf_data, cpl_off, cpl_data):
    """This rank's arrays of a DistributedHSSMatrix, cut from arrays indexed by tree
    node (``rank``; ``*_ptr``/``*_off`` per node into their data, valid at
    least on the nodes this rank holds; ``cpl_off[p]``: the coupling K(skel l, skel
    r) of parent p)."""
    sub, anc, halo = _present(own, n_levels)
    node_off, node_size = tree_layout(n, n_levels)
    n_nodes = node_off.size
    computed = np.union1d(sub, anc)
    present = np.union1d(computed, halo)
    r = np.zeros(n_nodes, np.int64)
    r[present] = rank[present]
    c = np.zeros(n_nodes, np.int64)
    leaf = computed >= 2 ** n_levels - 1
    inner = computed[~leaf]
    c[computed[leaf]] = node_size[computed[leaf]]
    c[inner] = r[2 * inner + 1] + r[2 * inner + 2]
    c[halo] = r[halo]                            # only their skeleton rows are held
    out_skel_ptr = pointers(r)
    take = ranges(skel_ptr[present], r[present])
    out_skel_idx = skel_idx[take].astype(np.int64)
    is_halo = np.isin(present, halo)
    out_skel_pos = skel_pos[take].astype(np.int64)
    # a halo node's positions are never used: all its rows are skeleton rows here
    local_pos = np.arange(int(r[present].sum()), dtype=np.int64) - np.repeat(
        out_skel_ptr[present], r[present])
    out_skel_pos = np.where(np.repeat(is_halo, r[present]), local_pos, out_skel_pos)
    with_p = computed[computed > 0]
    psize = np.zeros(n_nodes, np.int64)
    psize[with_p] = r[with_p] * c[with_p]
    out_proj = proj[ranges(proj_ptr[with_p], psize[with_p])].astype(np.float64)
    leaves = own.subtree_levels(n_levels)[n_levels]
    m2 = node_size[leaves] ** 2
    out_leaf = leaf_data[ranges(leaf_off[leaves], m2)].astype(np.float64)
    parents = computed[computed < 2 ** n_levels - 1]
    csize = r[2 * parents + 1] * r[2 * parents + 2]
    out_cpl = cpl_data[ranges(cpl_off[parents], csize)].astype(np.float64)
    return dict(n=n, n_levels=n_levels, rank=r, ncols=c, skel_ptr=out_skel_ptr,
                skel_idx=out_skel_idx, skel_pos=out_skel_pos,
                proj_ptr=pointers(psize), proj=out_proj, leaf_data=out_leaf,
                leaf_off=exclusive_cumsum(m2), far_pairs=np.column_stack(
                    [2 * parents + 1, 2 * parents + 2]).astype(np.int64),
                far_off=exclusive_cumsum(csize), far_data=out_cpl)


def distribute(H, comm):
    """The rank's share of a serial HSSMatrix ``H`` (the same on every rank; budget
    0) as a :class:`DistributedHSSMatrix`. Collective. For tests, for a matrix
    loaded from a file, and as the reference of the distributed construction."""
    if H.params.get("budget", 0) > 0:
        raise ValueError("distribute: a near field (budget > 0) is not distributed; "
                         "compress with budget=0.")
    comm = Comm.of(comm)
    size, me = comm.size, comm.rank
    tree = H.tree
    own = Ownership(tree.node_off, tree.node_size, tree.n_levels, size, me)
    cpl_off = np.zeros(tree.n_nodes, np.int64)
    sib = (H.far_pairs[:, 1] == H.far_pairs[:, 0] + 1) & (H.far_pairs[:, 0] % 2 == 1)
    cpl_off[(H.far_pairs[sib, 0] - 1) // 2] = H.far_pair_off[sib]
    parts = local_parts(H.n, H.n_levels, own, H.rank, H.skel_ptr, H.skel_idx,
                        H.skel_pos, H.proj_ptr, H.proj, H.diag_blk, H.near_data, cpl_off,
                        H.far_data)
    local = tree.perm[own.lo:own.hi]
    comp = None if H.compensation is None else H.compensation[local]
    return DistributedHSSMatrix(comm=comm, local_indices=local, compensation=comp,
                                params=H.params, info=H._info, **parts)


__all__ = ["DistributedHSSMatrix", "DistributedFactorization", "Ownership", "distribute"]
