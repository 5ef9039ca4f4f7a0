"""The compressed matrix, immutable, stored as flat arrays.

:class:`HSSBase` is the one implementation: the arrays of the nodes one rank holds
(its subtree over an :class:`~hsspetsc.mpi.ownership.Ownership`, its ancestors and their
other children), the matvec passes (Cython kernels in :mod:`hsspetsc.kernels.matvec`) with a
swap per shared ancestor, the factorization and solve (:mod:`hsspetsc.matrix.factor`), the
diagonal and the norm. :class:`HSSMatrix` is the case of one process (P = 1: the
subtree is the whole tree, there is nothing to swap) with vectors in the user's
index order and the figures a user looks at;
:class:`~hsspetsc.matrix.distributed.DistributedHSSMatrix` is the case of P ranks, vectors
being each rank's rows of the tree order. Construction lives in
:mod:`hsspetsc.compression.compress`.
"""
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ..kernels.matvec import Basis, Lists, l2l_nodes, n2s_nodes, s2n_nodes, s2s_nodes
from ..mpi.comm import Comm
from ..mpi.ownership import Exchange, Ownership
from ..util.blocks import pointers
from ..util.threads import blas_single_thread, effective_n_threads
from ..util.validation import as_block, check_float, check_result
from . import io
from .factor import HSSFactorization
from .layout import Bases, ClusterTree


@dataclass(frozen=True)
class BlockSet:
    """Stored blocks of one kind: pair p = (a, b) has its block (rows of a x
    columns of b, row-major) at ``data[offsets[p]:]``; each unordered pair once."""

    pairs: np.ndarray       # (p, 2) int64 node ids
    offsets: np.ndarray     # (p,) int64
    data: np.ndarray        # float64

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0))


def _csr_from_pairs(pairs, offsets, n_nodes):
    """Both directions of every unordered pair as CSR over targets.

    Returns (ptr, src, blk, trans): pair (a, b) with block offset o gives
    target a -> (b, o, 0) and, when a != b, target b -> (a, o, 1)."""
    a, b = pairs[:, 0], pairs[:, 1]
    off = offsets
    offdiag = a != b
    tgt = np.concatenate([a, b[offdiag]])
    src = np.concatenate([b, a[offdiag]])
    blk = np.concatenate([off, off[offdiag]])
    trans = np.concatenate([np.zeros(a.size, np.int8), np.ones(int(offdiag.sum()), np.int8)])
    order = np.lexsort((src, tgt))
    tgt, src, blk, trans = tgt[order], src[order], blk[order], trans[order]
    ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.add.at(ptr, tgt + 1, 1)
    ptr = np.cumsum(ptr)
    return (ptr, np.ascontiguousarray(src, np.int64), np.ascontiguousarray(blk, np.int64),
            np.ascontiguousarray(trans, np.int8))


class _Caches:
    """Derived data a matrix builds on first use and keeps (the factorization's
    shift-independent layout). Owned by one HSSMatrix; never part of its value."""

    def __init__(self):
        self._items = {}

    def get(self, name, build):
        if name not in self._items:
            self._items[name] = build()
        return self._items[name]


class HSSBase(ABC):
    """What the serial and the distributed HSS matrix share: the arrays of the nodes
    this rank holds and one implementation of the matvec, the factorization (with
    its solve and log-determinant), the diagonal and the norm.

    Vectors inside are this rank's rows of the tree order (``tree_rows``); a
    subclass says how its users' vectors map to them (:meth:`_rows_in`) and where the
    compensation lives (:meth:`compensation_rows`). Every method is collective over
    ``comm`` (with one process, nothing is communicated).
    """

    _operand = "X"             # the name of a matvec's operand in error messages

    def _set_core(self, *, tree, own, comm, local_indices, rank, ncols, skel_ptr,
                  skel_idx, skel_pos, proj_ptr, proj, near, far, couplings):
        """Store the arrays and derive the passes. ``near``/``far``/``couplings``:
        :class:`BlockSet` (near: the leaf blocks this rank holds; far: the far pairs
        it applies; couplings: sibling blocks that are not far pairs)."""
        n_nodes = tree.n_nodes
        self.tree = tree
        self.n, self.n_levels = int(tree.n), int(tree.n_levels)
        self.own, self.comm = own, comm
        self.size, self.rank_id = comm.size, comm.rank
        self.local_indices = np.ascontiguousarray(local_indices, dtype=np.int64)
        self.n_local = own.hi - own.lo
        self.node_off_local = (tree.node_off - own.lo).astype(np.int64)
        self.rank, self.ncols = rank, ncols
        self.skel_ptr, self.skel_idx, self.skel_pos = skel_ptr, skel_idx, skel_pos
        self.proj_ptr, self.proj = proj_ptr, proj
        self.near_pairs = near.pairs
        self.near_data = near.data
        self.far_pairs = far.pairs
        self.far_data = far.data
        self.far_pair_off = far.offsets      # block offset of each far pair
        self.sib_pairs, self.sib_data, self.sib_off = (couplings.pairs, couplings.data,
                                                      couplings.offsets)
        (self.near_ptr, self.near_src, self.near_blk,
         self.near_trans) = _csr_from_pairs(near.pairs, near.offsets, n_nodes)
        (self.far_ptr, self.far_src, self.far_blk,
         self.far_trans) = _csr_from_pairs(far.pairs, far.offsets, n_nodes)
        # offset of every leaf's diagonal block K(leaf, leaf) in near_data
        self.diag_blk = np.zeros(n_nodes, dtype=np.int64)
        on_diag = near.pairs[:, 0] == near.pairs[:, 1]
        self.diag_blk[near.pairs[on_diag, 0]] = near.offsets[on_diag]
        # this rank's subtree level by level (the root's level only with P = 1)
        self.levels = own.subtree_levels(self.n_levels)
        self.leaves = self.levels[self.n_levels]
        # the passes: the subtree's non-root nodes bottom-up and top-down, with the
        # bounds of their levels (a kernel runs each level in turn)
        levs = [lev for lev in sorted(self.levels) if lev > 0]
        down = np.concatenate([self.levels[lev] for lev in levs]
                              + [np.zeros(0, np.int64)]).astype(np.int64)
        up = np.concatenate([self.levels[lev] for lev in levs[::-1]]
                            + [np.zeros(0, np.int64)]).astype(np.int64)
        self._passes = (up, pointers([self.levels[lev].size for lev in levs[::-1]]),
                        down, pointers([self.levels[lev].size for lev in levs]))
        # the nodes whose far field this rank applies: its subtree's and its
        # ancestors' (every node but the root has a basis)
        held = np.concatenate([down, np.asarray(own.ancestors, np.int64)])
        self._with_basis = np.unique(held[held > 0]).astype(np.int64)
        # what the matvec kernels read, as typed objects (made once)
        self._basis = Basis(self.node_off_local, tree.node_size, rank, skel_ptr,
                            proj_ptr, proj, tree.first_leaf)
        self._near_lists = Lists(self.near_ptr, self.near_src, self.near_blk,
                                 self.near_trans, self.near_data)
        self._far_lists = Lists(self.far_ptr, self.far_src, self.far_blk,
                                self.far_trans, self.far_data)
        self._x = Exchange(comm)
        self._caches = _Caches()

    # ------------------------------------------------------------------ shape
    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def tree_rows(self, v):
        """This rank's rows (tree order) of a user-order vector of length N (all of
        them, permuted, with one process)."""
        return np.ascontiguousarray(v[self.local_indices])

    @abstractmethod
    def compensation_rows(self, factored=False):
        """The diagonal compensation in this rank's rows (tree order), or None: the
        one of the matvec, or with ``factored`` the one the factorization adds (they
        differ only with a near field; see :func:`hsspetsc.compress`'s ``spd``)."""

    def _operand_of(self, v):
        """A user-order vector of length N laid out as ``matvec`` takes it."""
        return self.tree_rows(v)

    @abstractmethod
    def _rows_in(self, X, what, where):
        """(X as this rank's rows, C-contiguous (n_local, k); a function that turns
        rows of the result into what the user gets back)."""

    # ----------------------------------------------------------------- matvec
    def matvec(self, X, n_threads=None):
        """H~ X (see the class docstring of the subclass for the layout of X)."""
        X2, finish = self._rows_in(X, self._operand, f"{type(self).__name__}.matvec")
        if X2.shape[1] == 0:
            return finish(np.empty_like(X2))
        U = self._apply_rows(X2, effective_n_threads(n_threads))
        c = self.compensation_rows()
        if c is not None:
            U += c[:, None] * X2
        return finish(U)

    def __matmul__(self, X):
        return self.matvec(X)

    def _apply_rows(self, X2, nt):
        """The hierarchical part of H~ times this rank's rows X2 (tree order): near
        field (L2L), upward pass (N2S) in the subtree and then one shared ancestor
        at a time after swapping the children's skeleton weights, far field (S2S),
        downward pass (S2N) from the ancestors into the subtree. One kernel call per
        pass and level group (:mod:`hsspetsc.kernels.matvec`)."""
        k = X2.shape[1]
        U = np.empty_like(X2)
        nskel = int(self.skel_ptr[-1])
        # every entry read is written first; with P ranks the buffers start at zero
        # all the same (a halo node's rows arrive by a swap)
        alloc = np.empty if self.size == 1 else np.zeros
        What = alloc(nskel * k + 1)
        Uhat = alloc(nskel * k + 1)
        basis = self._basis
        up, up_seg, down, down_seg = self._passes
        one = np.array([0, 1], np.int64)
        self._x.call("matvec")
        with blas_single_thread():
            l2l_nodes(self.leaves, X2, U, basis, self._near_lists, nt)
            if self.size == 1 and (self.n_levels == 0 or nskel == 0):
                return U
            n2s_nodes(up, up_seg, X2, What, k, basis, nt)
            for entry in self.own.path:
                a = entry[0]
                self._swap_rows("matvec", entry, What, self.skel_ptr, self.rank, k)
                if a > 0:
                    n2s_nodes(np.array([a], np.int64), one, X2, What, k, basis, nt)
            s2s_nodes(self._with_basis, What, Uhat, k, basis, self._far_lists, nt)
            for entry in reversed(self.own.path):
                if entry[0] > 0:
                    s2n_nodes(np.array([entry[0]], np.int64), one, U, Uhat, k, basis, nt)
            s2n_nodes(down, down_seg, U, Uhat, k, basis, nt)
        return U

    def _swap_rows(self, op, entry, buf, ptr, rank, k):
        """Send my child's rows (``rank`` x k at ``ptr`` * k in the flat ``buf``) to
        the entry's partners and put the sibling's in place."""
        _, me, sib = entry[:3]
        buf[ptr[sib] * k:(ptr[sib] + rank[sib]) * k] = self._x.swap(
            op, entry, buf[ptr[me] * k:(ptr[me] + rank[me]) * k], int(rank[sib]) * k)

    # ------------------------------------------------------------ factorize
    def factorize(self, shift=0.0, relative=False, n_threads=None):
        """Factor ``shift*I + H~`` (its HSS part; see :mod:`hsspetsc.matrix.factor`).

        ``shift`` >= 0 is absolute (added to the diagonal), or with ``relative=True``
        a multiple of |H~|_2 (see :meth:`norm`). O(N s^2), no new entries: call
        again with another shift to re-factor. H~ from ``compress(..., spd=True)``
        (the default) of a PSD source factors for every shift >= 1e-12 x its
        largest diagonal entry. Otherwise raises :class:`hsspetsc.FactorizationError`
        (naming the node and the shift, and what to do) when shift*I + H~ is not
        positive definite."""
        if relative:
            err = None
            try:
                shift = check_float(shift, "shift", "factorize", lo=0.0)
            except (TypeError, ValueError) as exc:
                err = exc
            self.comm.agree(err)
            shift = shift * self.norm()
        return HSSFactorization(self, shift=shift, n_threads=n_threads)

    # ---------------------------------------------------------------- figures
    def _diagonal_rows(self):
        """This rank's rows of the diagonal of H~ (tree order)."""
        m = self.tree.node_size[self.leaves]
        i = np.arange(self.n_local) - np.repeat(self.node_off_local[self.leaves], m)
        d = self.near_data[np.repeat(self.diag_blk[self.leaves], m) + i * (np.repeat(m, m) + 1)]
        c = self.compensation_rows()
        return d if c is None else d + c

    def max_diagonal(self):
        """The largest diagonal entry of H~ over every rank (0 for an empty matrix)."""
        d = self._diagonal_rows()
        return self.comm.max(float(np.max(d)) if d.size else 0.0)

    def norm(self):
        """|H~|_2, estimated by 30 power iterations (relative accuracy ~1e-3 on
        typical spectra); computed once and kept."""
        def power():
            v = self._operand_of(np.random.default_rng(12345).standard_normal(self.n))
            lam = 0.0
            for _ in range(30):
                w = self.matvec(v)
                nw = float(np.sqrt(self.comm.sum(float(w @ w))))
                nv = float(np.sqrt(self.comm.sum(float(v @ v))))
                if nw == 0.0:
                    return 0.0
                lam = nw / nv
                v = w / nw
            return lam
        return self._caches.get("norm", power)


class HSSMatrix(HSSBase):
    """A hierarchically compressed symmetric matrix K~ ~= K.

    Built by :func:`hsspetsc.compress` or :func:`hsspetsc.compress_sketch`. Apply it
    with ``H @ W`` (a vector of length N or an N x k block, user index order),
    ``H.matvec(W, n_threads=...)`` or ``H.as_linear_operator()``. ``repr(H)`` prints
    the per-level table and ``H.stats()`` returns the figures as a dict.

    Made from named parts (all flat, tree order; see :mod:`hsspetsc.kernels.matvec`):
    ``tree`` (:class:`~hsspetsc.matrix.layout.ClusterTree`), ``bases``
    (:class:`~hsspetsc.matrix.layout.Bases`: per node its rank, skeleton and
    interpolation matrix), ``near`` (K(leaf, leaf) blocks), ``far`` (K(skel, skel)
    blocks of the far pairs), ``couplings`` (sibling blocks K(skel_l, skel_r) that
    are not far pairs, for the factorization; empty for budget 0), ``compensation``
    (None, or an (N,) diagonal added to the hierarchical part so that H~ is positive
    semi-definite: see :func:`hsspetsc.compress`'s ``spd``), ``params`` and ``info``.
    It is immutable: nothing writes into it after construction. It is the
    one-process case of :class:`HSSBase` (one rank owning the whole tree).
    """

    _operand = "W"

    def __init__(self, *, tree, bases, near, far, couplings, params, info,
                 compensation=None, factor_compensation=None):
        # columns of each node's interpolation matrix: its size at a leaf, the
        # children's ranks above
        fl = tree.first_leaf
        ncols = tree.node_size.astype(np.int64).copy()
        ncols[:fl] = bases.rank[2 * np.arange(fl) + 1] + bases.rank[2 * np.arange(fl) + 2]
        self._set_core(tree=tree, own=Ownership(tree.node_off, tree.node_size,
                                                tree.n_levels, 1, 0),
                       comm=Comm(None), local_indices=tree.perm, rank=bases.rank,
                       ncols=ncols, skel_ptr=bases.skel_ptr, skel_idx=bases.skel_idx,
                       skel_pos=bases.skel_pos, proj_ptr=bases.proj_ptr, proj=bases.proj,
                       near=near, far=far, couplings=couplings)
        self.compensation = (None if compensation is None
                             else np.ascontiguousarray(compensation, dtype=np.float64))
        # with a near field only the factored HSS part is compensated (the matvec
        # keeps the exact near blocks): see compress(spd=...)
        self.factor_compensation = (None if factor_compensation is None else
                                    np.ascontiguousarray(factor_compensation, np.float64))
        self._parts = {"tree": tree, "bases": bases, "near": near, "far": far,
                       "couplings": couplings, "compensation": self.compensation,
                       "factor_compensation": self.factor_compensation}
        self.truncated = list(bases.truncated)
        self.params = dict(params)
        self._info = dict(info)

    def with_info(self, info):
        """The same matrix (arrays shared) with ``info`` in place of its info."""
        return HSSMatrix(**self._parts, params=self.params, info=info)

    def with_compensation(self, compensation, info, factor_only=False):
        """A new matrix: this one plus diag(``compensation``) (arrays shared), or,
        with ``factor_only``, only its factored HSS part."""
        key = "factor_compensation" if factor_only else "compensation"
        parts = dict(self._parts, **{key: compensation})
        return HSSMatrix(**parts, params=self.params, info=info)

    def compensation_rows(self, factored=False):
        key = ("factor_compensation" if factored and self.factor_compensation is not None
               else "compensation")
        c = getattr(self, key)
        return None if c is None else self._caches.get(key, lambda: self.tree_rows(c))

    def matvec(self, W, n_threads=None):
        """Return K~ W for W of shape (N,) or (N, k), in the user's index order."""
        return super().matvec(W, n_threads)

    def _operand_of(self, v):
        return v

    def _rows_in(self, X, what, where):
        X, X2, vec = as_block(X, self.n, what, where)
        perm = self.tree.perm

        def finish(U):
            out = np.empty_like(U)
            out[perm] = U
            check_result(out, X2, where)
            return out[:, 0] if vec else out
        return np.ascontiguousarray(X2[perm]), finish

    # ------------------------------------------------------------------ shape
    @property
    def perm(self):
        """Tree order: ``perm[t]`` is the original index at tree position t."""
        return self.tree.perm

    def as_linear_operator(self):
        """The matrix as a ``scipy.sparse.linalg.LinearOperator`` (symmetric)."""
        return LinearOperator(self.shape, matvec=self.matvec, rmatvec=self.matvec,
                              matmat=self.matvec, rmatmat=self.matvec, dtype=np.float64)

    def to_dense(self, max_n=8192):
        """K~ as a dense array (H @ I); refused above ``max_n``."""
        if self.n > max_n:
            raise ValueError(f"to_dense: N = {self.n} is larger than max_n = {max_n}.")
        return self.matvec(np.eye(self.n))

    def plot(self, path=None, ax=None, title=None):
        """Draw the block structure in tree order, as hierarchical-matrix toolboxes
        do: exact near blocks dark, every far block K(a, b) ~ U_a B U_b^T coloured by
        its rank min(r_a, r_b) (with the number in the larger blocks). Writes
        ``path`` (PNG) when given; returns the matplotlib Axes."""
        import matplotlib
        if path is not None and ax is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle
        tree = self.tree
        off, size, n = tree.node_off, tree.node_size, self.n
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(6.2, 5.4))
        rects, ranks = [], []
        for a, b in self.far_pairs:
            k = int(min(self.rank[a], self.rank[b]))
            for x, y in ((a, b), (b, a)):
                rects.append(Rectangle((off[x], off[y]), size[x], size[y]))
                ranks.append(k)
        far = PatchCollection(rects, cmap="viridis", edgecolor="white", linewidth=0.3)
        far.set_array(np.asarray(ranks, dtype=float))
        ax.add_collection(far)
        near = [Rectangle((off[x], off[y]), size[x], size[y])
                for a, b in self.near_pairs for x, y in ((a, b), (b, a))]
        ax.add_collection(PatchCollection(near, facecolor="#b2182b", edgecolor="white",
                                          linewidth=0.3))
        for a, b in self.far_pairs:
            if size[a] >= n / 16:
                ax.text(off[b] + size[b] / 2, off[a] + size[a] / 2,
                        str(int(min(self.rank[a], self.rank[b]))), ha="center",
                        va="center", fontsize=7, color="white")
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        ax.set_aspect("equal")
        ax.set_xlabel("tree order")
        s = self.stats()
        ax.set_title(title or f"N = {n}: far blocks by rank, near blocks (red) exact; "
                     f"{s['stored_bytes'] / 1e6:.1f} MB", fontsize=9)
        if own:
            fig.colorbar(far, ax=ax, label="rank of the block")
            fig.tight_layout()
            if path is not None:
                fig.savefig(path, dpi=120)
                plt.close(fig)
        return ax

    def save(self, path):
        """Write this matrix to ``path`` (.npz, versioned, no pickle; see
        :mod:`hsspetsc.matrix.io`); ``hsspetsc.load(path)`` reads it back."""
        return io.save(self, path)

    def _archive(self, kind="matrix", extra=None):
        """The arrays of this matrix's file (:mod:`hsspetsc.matrix.io`)."""
        parts = self._parts
        tree, bases = parts["tree"], parts["bases"]
        arrays = {"kind": np.array(kind),
                  "n": np.int64(tree.n), "n_levels": np.int64(tree.n_levels),
                  "perm": tree.perm, "iperm": tree.iperm, "node_off": tree.node_off,
                  "node_size": tree.node_size, "rank": bases.rank,
                  "skel_ptr": bases.skel_ptr, "skel_idx": bases.skel_idx,
                  "skel_pos": bases.skel_pos, "proj_ptr": bases.proj_ptr,
                  "proj": bases.proj, "truncated": io.json_text(list(bases.truncated)),
                  "params": io.json_text(self.params), "info": io.json_text(self._info)}
        for name in ("near", "far", "couplings"):
            b = parts[name]
            arrays[f"{name}_pairs"] = b.pairs
            arrays[f"{name}_offsets"] = b.offsets
            arrays[f"{name}_data"] = b.data
        for name in ("compensation", "factor_compensation"):
            c = parts[name]
            arrays[name] = np.zeros(0) if c is None else c
        arrays.update(extra or {})
        return arrays

    # ---------------------------------------------------------------- figures
    def diagonal(self):
        """The diagonal of K~ (exact: the leaf blocks are kept), user order."""
        d = self._diagonal_rows()
        out = np.empty_like(d)
        out[self.tree.perm] = d
        return out

    def _level_rows(self):
        rows = []
        far_lev = (np.floor(np.log2(self.far_pairs[:, 0] + 1)).astype(int)
                   if self.far_pairs.size else np.zeros(0, int))
        far_bytes = (8 * self.rank[self.far_pairs[:, 0]] * self.rank[self.far_pairs[:, 1]]
                     if self.far_pairs.size else np.zeros(0, np.int64))
        for lev in range(1, self.n_levels + 1):
            nodes = self.tree.level_nodes(lev)
            r = self.rank[nodes]
            proj_b = 8 * int((self.proj_ptr[nodes + 1] - self.proj_ptr[nodes]).sum())
            fb = int(far_bytes[far_lev == lev].sum())
            rows.append({"level": lev, "nodes": int(nodes.size), "rank_min": int(r.min()),
                         "rank_mean": float(r.mean()), "rank_max": int(r.max()),
                         "far_pairs": int((far_lev == lev).sum()),
                         "bytes": proj_b + fb})
        return rows

    def stats(self):
        """Figures of the compressed matrix as a dict (see README for each key)."""
        n = self.n
        ns = self.tree.node_size
        a, b = self.near_pairs[:, 0], self.near_pairs[:, 1]
        near_entries = int(np.sum(ns[a] * ns[b] * np.where(a == b, 1, 2)))
        index_bytes = sum(x.nbytes for x in (
            self.tree.perm, self.tree.iperm, self.tree.node_off, self.tree.node_size,
            self.rank, self.skel_ptr, self.skel_idx, self.proj_ptr, self.near_ptr,
            self.near_src, self.near_blk, self.near_trans, self.far_ptr, self.far_src,
            self.far_blk, self.far_trans, self.skel_pos, self.sib_pairs, self.sib_off))
        data_bytes = (self.proj.nbytes + self.near_data.nbytes + self.far_data.nbytes
                      + self.sib_data.nbytes)
        nonroot = self.rank[1:]
        rank_implied = 8 * (int(np.sum(self.rank[1:] * self.ncols[1:]))
                            + int(np.sum(self.rank[self.far_pairs[:, 0]]
                                         * self.rank[self.far_pairs[:, 1]]))
                            + int(np.sum(ns[a] * ns[b]))
                            + int(self.sib_data.size))
        out = {
            "N": n,
            "levels": self.n_levels,
            "leaf_size": int(self.params["leaf_size"]),
            "rank_min": int(nonroot.min()) if nonroot.size else 0,
            "rank_mean": float(nonroot.mean()) if nonroot.size else 0.0,
            "rank_max": int(nonroot.max()) if nonroot.size else 0,
            "ranks_by_level": self._level_rows(),
            "stored_bytes": int(data_bytes + index_bytes),
            "data_bytes": int(data_bytes),
            "rank_implied_bytes": int(rank_implied),
            "dense_bytes": 8 * n * n,
            "near_fraction": near_entries / float(n) ** 2,
            "near_blocks": int(self.near_pairs.shape[0]),
            "far_pairs": int(self.far_pairs.shape[0]),
            "truncated_nodes": list(self.truncated),
            "params": dict(self.params),
        }
        out.update(self._info)
        return out

    def __repr__(self):
        s = self.stats()
        p = self.params
        lines = [f"HSSMatrix  N={s['N']}  levels={s['levels']}  leaf_size={p['leaf_size']}  "
                 f"tol={p['tol']:.0e}  max_rank={p['max_rank']}  budget={p['budget']:g}  "
                 f"distance={p['distance']}",
                 f"{'level':>5} {'nodes':>6} {'rank min':>8} {'mean':>7} {'max':>5} "
                 f"{'far pairs':>9} {'MB':>8}"]
        for r in s["ranks_by_level"]:
            lines.append(f"{r['level']:>5} {r['nodes']:>6} {r['rank_min']:>8} "
                         f"{r['rank_mean']:>7.1f} {r['rank_max']:>5} {r['far_pairs']:>9} "
                         f"{r['bytes'] / 1e6:>8.2f}")
        lines.append(f"{'near':>5} {s['near_blocks']:>6} {'':>8} {'':>7} {'':>5} {'':>9} "
                     f"{self.near_data.nbytes / 1e6:>8.2f}   (near field {100 * s['near_fraction']:.2f}% of N^2)")
        lines.append(f"total {s['stored_bytes'] / 1e6:.2f} MB (dense {s['dense_bytes'] / 1e6:.1f} MB, "
                     f"{s['dense_bytes'] / max(s['stored_bytes'], 1):.1f}x smaller); entries "
                     f"evaluated {100 * s.get('entries_fraction', 0):.2f}% of N^2")
        est = s.get("error_estimate")
        lines.append(f"error estimate {'-' if est is None else f'{est:.1e}'} "
                     f"(|K - H~|_F / |K|_F, tol {p['tol']:.0e}); "
                     f"{len(self.truncated)} node(s) capped; PSD compensation "
                     f"{s.get('compensation', 0.0):.3g}")
        return "\n".join(lines)


def load(path, n_threads=None):
    """Read what :func:`hsspetsc.matrix.io.save` wrote: an HSSMatrix, or an
    HSSFactorization (factored again at its saved shift). Clear errors for a
    missing, foreign, truncated or newer file."""
    path = os.fspath(path)
    a = io.read_archive(path)
    try:
        tree = ClusterTree(n=int(a["n"]), n_levels=int(a["n_levels"]), perm=a["perm"],
                           iperm=a["iperm"], node_off=a["node_off"],
                           node_size=a["node_size"])
        bases = Bases(rank=a["rank"], skel_ptr=a["skel_ptr"], skel_idx=a["skel_idx"],
                      skel_pos=a["skel_pos"], proj_ptr=a["proj_ptr"], proj=a["proj"],
                      truncated=tuple(json.loads(str(a["truncated"]))))
        blocks = {name: BlockSet(a[f"{name}_pairs"].reshape(-1, 2), a[f"{name}_offsets"],
                                 a[f"{name}_data"]) for name in ("near", "far", "couplings")}
        comp = {name: (a[name] if a[name].size else None)
                for name in ("compensation", "factor_compensation")}
        H = HSSMatrix(tree=tree, bases=bases, **blocks, **comp,
                      params=json.loads(str(a["params"])), info=json.loads(str(a["info"])))
    except KeyError as e:
        raise ValueError(f"load: {path} lacks the entry {e}; it is incomplete.") from None
    if str(a["kind"]) == "factorization":
        return H.factorize(float(a["shift"]), n_threads=n_threads)
    return H
