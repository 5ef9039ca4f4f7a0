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

Factorization and solve follow the same pattern: the subtree is eliminated with the
serial kernels (:mod:`hsspetsc._factor`), then each ancestor is eliminated by every
rank of its group after swapping the children's Schur complements (r x r); the
root's small block is factored by everyone. A solve swaps r x nrhs blocks on the way
up and none on the way down.

The arithmetic per node is the serial one in the same order: matvec and solve equal
the serial matrix's to round-off on any number of ranks.
"""
import numpy as np

from ._blocks import exclusive_cumsum, pointers, ranges
from ._collective import Comm
from ._threads import blas_single_thread, effective_n_threads
from ._validation import as_block, check_float
from .tree import tree_layout

TAG_BASE = {"matvec": 1000, "solve": 3000, "factorize": 5000, "build": 7000}


class Ownership:
    """Which rank owns which subtree (see the module docstring).

    ``group[a]`` = (lo, hi): the ranks below node a, for every shared node and every
    subtree root. ``root_of[p]``: the subtree root of rank p. ``path``: this rank's
    ancestors from the bottom, each as (ancestor, my child, the sibling child,
    the rank I receive from, the ranks I send to)."""

    def __init__(self, node_off, node_size, n_levels, size, rank):
        first_leaf = 2 ** n_levels - 1
        self.size, self.rank = int(size), int(rank)
        self.group = {}
        self.root_of = np.full(self.size, -1, dtype=np.int64)
        stack = [(0, 0, self.size)]
        while stack:
            a, lo, hi = stack.pop()
            self.group[a] = (lo, hi)
            g = hi - lo
            if g == 1:
                self.root_of[lo] = a
                continue
            if a >= first_leaf:
                raise ValueError(
                    f"{self.size} ranks need at least {self.size} leaves: the tree has "
                    f"{first_leaf + 1} (N = {int(node_size[0])}); use a smaller "
                    f"leaf_size or fewer ranks.")
            left = 2 * a + 1
            pl = int(np.floor(g * node_size[left] / node_size[a] + 0.5))
            pl = min(max(pl, 1), g - 1)
            stack.append((left + 1, lo + pl, hi))
            stack.append((left, lo, lo + pl))
        self.sub = int(self.root_of[self.rank])
        self.sub_level = int(np.floor(np.log2(self.sub + 1)))
        self.lo = int(node_off[self.sub])
        self.hi = self.lo + int(node_size[self.sub])
        self.offsets = np.r_[node_off[self.root_of], node_off[0] + node_size[0]].astype(np.int64)
        self.path = []
        a = self.sub
        while a > 0:
            parent = (a - 1) // 2
            sib = a + 1 if a % 2 == 1 else a - 1
            m0, m1 = self.group[a]
            t0, t1 = self.group[sib]
            i = self.rank - m0
            recv = t0 + i % (t1 - t0)
            send = [t0 + j for j in range(t1 - t0) if j % (m1 - m0) == i]
            self.path.append((parent, a, sib, recv, send))
            a = parent

    @property
    def ancestors(self):
        return [e[0] for e in self.path]

    @property
    def halo(self):
        return [e[2] for e in self.path]

    def subtree_levels(self, n_levels):
        """Nodes of this rank's subtree, per level (level -> int64 array)."""
        out = {}
        for lev in range(self.sub_level, n_levels + 1):
            d = lev - self.sub_level
            first = (self.sub + 1) * 2 ** d - 1
            out[lev] = np.arange(first, first + 2 ** d, dtype=np.int64)
        return out


class _Shape:
    """The tree's shape (what the factorization layout needs of a ClusterTree)."""

    def __init__(self, n, n_levels, node_off, node_size):
        self.n, self.n_levels = n, n_levels
        self.node_off, self.node_size = node_off, node_size

    @property
    def n_nodes(self):
        return self.node_off.shape[0]

    @property
    def first_leaf(self):
        return 2 ** self.n_levels - 1

    def level_nodes(self, lev):
        return np.arange(2 ** lev - 1, 2 ** (lev + 1) - 1)


class _Exchange:
    """Point-to-point swaps with a partner group, counted per operation (``comm``:
    a :class:`~hsspetsc._collective.Comm`; the swaps follow an agreement)."""

    def __init__(self, comm):
        self.mpi = comm.mpi
        self.counts = {}

    def swap(self, op, entry, send, recv_size):
        """Send ``send`` to the entry's partners, receive ``recv_size`` doubles."""
        parent, _, _, src, dests = entry
        recv = np.empty(recv_size)
        c = self._counter(op)
        send = np.ascontiguousarray(send, dtype=np.float64)
        tag = TAG_BASE[op] + int(parent) % 1000
        reqs = [self.mpi.Irecv(recv, source=src, tag=tag)]
        reqs += [self.mpi.Isend(send, dest=q, tag=tag) for q in dests]
        from mpi4py import MPI
        MPI.Request.Waitall(reqs)
        c["messages_sent"] += len(dests)
        c["messages_received"] += 1
        c["bytes_sent"] += send.nbytes * len(dests)
        c["bytes_received"] += recv.nbytes
        return recv

    def _counter(self, op):
        return self.counts.setdefault(op, dict.fromkeys(
            ("calls", "messages_sent", "messages_received", "bytes_sent",
             "bytes_received"), 0))

    def call(self, op):
        self._counter(op)["calls"] += 1


class DistributedHSSMatrix:
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
    """

    def __init__(self, *, comm, n, n_levels, rank, ncols, skel_ptr, skel_idx, skel_pos,
                 proj_ptr, proj, leaf_data, leaf_off, far_pairs, far_off, far_data,
                 local_indices, compensation, params, info):
        from .hss import _csr_from_pairs
        self.comm = comm = Comm.of(comm)
        size, me = comm.size, comm.rank
        node_off, node_size = tree_layout(n, n_levels)
        self.own = Ownership(node_off, node_size, n_levels, size, me)
        self.tree = _Shape(n, n_levels, node_off, node_size)
        self.n, self.n_levels = int(n), int(n_levels)
        self.size, self.rank_id = size, me
        self.offsets = self.own.offsets
        self.n_local = self.own.hi - self.own.lo
        self.node_off_local = (node_off - self.own.lo).astype(np.int64)
        self.rank = rank
        self.ncols = ncols
        self.skel_ptr, self.skel_idx, self.skel_pos = skel_ptr, skel_idx, skel_pos
        self.proj_ptr, self.proj = proj_ptr, proj
        self.local_indices = np.ascontiguousarray(local_indices, dtype=np.int64)
        self.compensation = (None if compensation is None
                             else np.ascontiguousarray(compensation, dtype=np.float64))
        self.factor_compensation = None
        self.params = dict(params)
        self._info = dict(info)
        n_nodes = node_off.size
        self.levels = self.own.subtree_levels(n_levels)
        leaves = self.levels[n_levels]
        self.leaves = leaves
        self.near_data = np.ascontiguousarray(leaf_data, dtype=np.float64)
        self.diag_blk = np.zeros(n_nodes, dtype=np.int64)
        self.diag_blk[leaves] = leaf_off
        (self.near_ptr, self.near_src, self.near_blk, self.near_trans) = _csr_from_pairs(
            np.column_stack([leaves, leaves]), np.asarray(leaf_off, np.int64), n_nodes)
        self.far_pairs = np.asarray(far_pairs, dtype=np.int64).reshape(-1, 2)
        self.far_pair_off = np.asarray(far_off, dtype=np.int64)
        self.far_data = np.ascontiguousarray(far_data, dtype=np.float64)
        (self.far_ptr, self.far_src, self.far_blk, self.far_trans) = _csr_from_pairs(
            self.far_pairs, self.far_pair_off, n_nodes)
        self.sib_pairs = np.zeros((0, 2), np.int64)
        self.sib_off = np.zeros(0, np.int64)
        self.sib_data = np.zeros(0)
        # the nodes this rank computes: its subtree and its ancestors (not the root
        # for the passes that need a basis)
        sub_nodes = np.concatenate([self.levels[lev] for lev in sorted(self.levels)])
        # the subtree's nodes level by level, bottom-up and top-down, with the
        # bounds of the levels (the matvec kernels run each segment in turn)
        levs = sorted(self.levels)
        down = np.concatenate([self.levels[lev] for lev in levs]).astype(np.int64)
        down_seg = pointers([self.levels[lev].size for lev in levs])
        up = np.concatenate([self.levels[lev] for lev in levs[::-1]]).astype(np.int64)
        up_seg = pointers([self.levels[lev].size for lev in levs[::-1]])
        self._passes = (up, up_seg, down, down_seg)
        self._with_basis = np.setdiff1d(np.r_[sub_nodes, np.asarray(self.own.ancestors, np.int64)],
                                        [0]).astype(np.int64)
        self._x = _Exchange(comm)
        from .hss import _Caches
        self._caches = _Caches()
        self.truncated = list(self._info.get("truncated_nodes", []))

    # ------------------------------------------------------------------ shape
    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _compensation_tree(self):
        return np.zeros(0) if self.compensation is None else self.compensation

    def max_diagonal(self):
        """The largest diagonal entry of H~ over every rank (collective)."""
        d = self.diagonal()
        return self.comm.max(float(np.max(d)) if d.size else 0.0)

    def _tree_rows(self, v):
        """This rank's rows (tree order) of a user-order vector of length N."""
        return np.ascontiguousarray(v[self.local_indices])

    def _factorize_with(self, shift, dshift, n_threads=None):
        """shift*I + diag(dshift) + H~ factored across the ranks (dshift: this rank's
        rows, tree order). Collective."""
        return DistributedFactorization(self, shift=shift, n_threads=n_threads,
                                        _dshift=dshift)

    def _check_local(self, X, what, where):
        """X as a C-contiguous (n_local, k) block; agreed on every rank (one rank's
        bad input raises on all of them, none is left waiting)."""
        err, vec, X2, k = None, False, None, -1
        try:
            # (this rank's share of the tree order: H.local_indices)
            _, X2, vec = as_block(X, self.n_local, what, f"{where} on rank {self.rank_id}")
            X2 = np.ascontiguousarray(X2)
            k = X2.shape[1]
        except (ValueError, TypeError) as exc:
            err = exc
        ks = self.comm.gather(k, err)
        if len(set(ks)) != 1:
            raise ValueError(f"{where}: the ranks pass different numbers of columns "
                             f"({ks}).")
        return X2, vec

    # ----------------------------------------------------------------- matvec
    def matvec(self, X, n_threads=None):
        """This rank's rows of H~ X, for this rank's rows X (tree order; shape
        (n_local,) or (n_local, k)). Collective."""
        X2, vec = self._check_local(X, "X", "DistributedHSSMatrix.matvec")
        k = X2.shape[1]
        U = np.empty_like(X2)
        if k == 0:
            return U[:, 0] if vec else U
        nt = effective_n_threads(n_threads)
        from ._matvec import l2l_nodes, n2s_nodes, s2n_nodes, s2s_nodes
        own = self.own
        nskel = int(self.skel_ptr[-1])
        What = np.zeros(nskel * k + 1)
        Uhat = np.zeros(nskel * k + 1)
        off, size = self.node_off_local, self.tree.node_size
        basis = (off, size, self.rank, self.skel_ptr, self.proj_ptr, self.proj)
        self._x.call("matvec")
        up, up_seg, down, down_seg = self._passes
        fl = self.tree.first_leaf
        one = np.array([0, 1], np.int64)
        with blas_single_thread():
            l2l_nodes(self.leaves, X2, U, off, size, self.near_ptr, self.near_src,
                      self.near_blk, self.near_trans, self.near_data, nt)
            n2s_nodes(up, up_seg, fl, X2, What, k, *basis, nt)
            for entry in own.path:
                a = entry[0]
                self._swap_rows("matvec", entry, What, self.skel_ptr, self.rank, k)
                if a > 0:
                    n2s_nodes(np.array([a], np.int64), one, fl, X2, What, k, *basis, nt)
            s2s_nodes(self._with_basis, What, Uhat, k, self.rank, self.skel_ptr,
                      self.far_ptr, self.far_src, self.far_blk, self.far_trans,
                      self.far_data, nt)
            for entry in reversed(own.path):
                s2n_nodes(np.array([entry[0]], np.int64), one, fl, U, Uhat, k, *basis, nt)
            s2n_nodes(down, down_seg, fl, U, Uhat, k, *basis, nt)
        if self.compensation is not None:
            U += self.compensation[:, None] * X2
        return U[:, 0] if vec else U

    def _swap_rows(self, op, entry, buf, ptr, rank, k):
        """Send my child's rows (``rank`` x k at ``ptr`` * k in the flat ``buf``) to
        the entry's partners and put the sibling's in place."""
        _, me, sib = entry[:3]
        buf[ptr[sib] * k:(ptr[sib] + rank[sib]) * k] = self._x.swap(
            op, entry, buf[ptr[me] * k:(ptr[me] + rank[me]) * k], int(rank[sib]) * k)

    def __matmul__(self, X):
        return self.matvec(X)

    def diagonal(self):
        """This rank's rows of the diagonal of H~ (tree order)."""
        m = self.tree.node_size[self.leaves]
        i = np.arange(self.n_local) - np.repeat(self.node_off_local[self.leaves], m)
        d = self.near_data[np.repeat(self.diag_blk[self.leaves], m) + i * (np.repeat(m, m) + 1)]
        if self.compensation is not None:
            d = d + self.compensation
        return d

    def norm(self):
        """|H~|_2 by 30 power iterations (collective; computed once and kept)."""
        def power():
            rng = np.random.default_rng(12345)
            v = rng.standard_normal(self.n)[self.local_indices]
            lam = 0.0
            for _ in range(30):
                w = self.matvec(v)
                nw = np.sqrt(self.comm.sum(float(w @ w)))
                nv = np.sqrt(self.comm.sum(float(v @ v)))
                if nw == 0.0:
                    return 0.0
                lam = nw / nv
                v = w / nw
            return lam
        return self._caches.get("norm", power)

    def factorize(self, shift=0.0, relative=False, n_threads=None):
        """Factor shift*I + H~ across the ranks (collective); see
        :meth:`hsspetsc.HSSMatrix.factorize`."""
        if relative:
            err = None
            try:
                shift = check_float(shift, "shift", "factorize", lo=0.0)
            except (TypeError, ValueError) as exc:
                err = exc
            self.comm.agree(err)
            shift = shift * self.norm()
        return DistributedFactorization(self, shift=shift, n_threads=n_threads)

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


class DistributedFactorization:
    """shift*I + H~ factored across the ranks (see the module docstring).
    ``solve(B)`` takes and returns this rank's rows (tree order). Collective."""

    def __init__(self, H, shift=0.0, n_threads=None, _dshift=None):
        from ._factor import factor_level, factor_root, logdet_sum
        from .factor import FactorizationError, _Layout
        self.H = H
        self.n = H.n
        err = None
        try:
            self.shift = check_float(shift, "shift", "factorize", lo=0.0)
        except (TypeError, ValueError) as exc:
            err, self.shift = exc, None
        shifts = H.comm.gather(self.shift, err)
        if len(set(shifts)) != 1:
            raise ValueError(f"factorize: the ranks pass different shifts ({shifts}); "
                             f"every rank must factor the same matrix.")
        dshift = H._compensation_tree() if _dshift is None else _dshift
        nt = effective_n_threads(n_threads)
        lay = self._lay = H._caches.get("factor_layout", lambda: _Layout(H, nt))
        own, L = H.own, H.n_levels
        self.L_data = np.empty(int(lay.L_ptr[-1]) + 1)
        self.G_data = np.empty(int(lay.G_ptr[-1]) + 1)
        Z = np.empty(int(lay.Z_ptr[-1]) + 1)
        info = np.zeros(H.tree.n_nodes, dtype=np.int64)
        off = H.node_off_local
        bad = None

        def level(nodes, leaf):
            for part, wptr, work in lay.work_chunks(nodes,
                                                    lay.c * lay.c + lay.red * lay.red):
                factor_level(part, leaf, self.shift, dshift, off, lay.c, lay.r, lay.red,
                             lay.sk_ptr, lay.sk_pos, lay.rd_ptr, lay.rd_pos, lay.T_ptr,
                             lay.T_data, H.near_data, lay.diag_off, lay.B_ptr, lay.B_data,
                             lay.L_ptr, self.L_data, lay.G_ptr, self.G_data, lay.Z_ptr, Z,
                             wptr, work, info, nt)
            b = nodes[info[nodes] != 0]
            return None if b.size == 0 else int(b[0])

        H._x.call("factorize")
        with blas_single_thread():
            for lev in range(L, max(own.sub_level, 1) - 1, -1):
                bad = level(H.levels[lev], lev == L)
                if bad is not None:
                    break
            # every rank learns of a failed pivot before any swap
            bads = H.comm.gather(bad)
            for entry in own.path if all(b is None for b in bads) else []:
                a, me, sib = entry[:3]
                zp, rk = lay.Z_ptr, lay.r
                Z[zp[sib]:zp[sib] + rk[sib] ** 2] = H._x.swap(
                    "factorize", entry, Z[zp[me]:zp[me] + rk[me] ** 2], int(rk[sib]) ** 2)
                if a > 0 and bad is None:
                    bad = level(np.array([a], np.int64), False)
            self.Lroot = np.empty(max(int(lay.c[0]) ** 2, 1))
            rinfo = 0
            if bad is None and all(b is None for b in bads):
                rinfo = factor_root(L == 0, self.shift, dshift, lay.c, lay.r, H.near_data,
                                    lay.diag_off, lay.Z_ptr, Z, lay.B_ptr, lay.B_data,
                                    self.Lroot)
                if rinfo != 0:
                    bad = 0
            bads = H.comm.gather(bad)
        failed = [(r, b) for r, b in enumerate(bads) if b is not None]
        if failed:
            r, a = failed[0]
            lev = int(np.floor(np.log2(a + 1)))
            raise FactorizationError(
                f"factorize: the pivot block of node {a} (level {lev}, on rank {r}) is "
                f"not positive definite for shift = {self.shift:g}: shift*I + H~ is not "
                f"SPD.", a, lev, self.shift)
        # log det: each node counted once (a shared node by the first rank of its group)
        mine = np.zeros(H.tree.n_nodes, dtype=np.int64)
        for lev in range(max(own.sub_level, 1), L + 1):
            mine[H.levels[lev]] = lay.red[H.levels[lev]]
        for a in own.ancestors:
            if H.own.group[a][0] == H.rank_id and a > 0:
                mine[a] = lay.red[a]
        c0 = int(lay.c[0]) if H.rank_id == 0 else 0
        self._logdet = 2.0 * H.comm.sum(logdet_sum(self.L_data, lay.L_ptr, mine, self.Lroot, c0))

    def solve(self, B, n_threads=None):
        """This rank's rows of (shift*I + H~)^-1 B (tree order). Collective."""
        from ._factor import solve_down_level, solve_root, solve_up_level
        H = self.H
        B2, vec = H._check_local(B, "B", "DistributedFactorization.solve")
        k = B2.shape[1]
        X = np.empty_like(B2)
        if k == 0:
            return X[:, 0] if vec else X
        nt = effective_n_threads(n_threads)
        lay, own, L = self._lay, H.own, H.n_levels
        bhat = np.empty(int(lay.sk_ptr[-1]) * k + 1)
        wbuf = np.empty(int(lay.rd_ptr[-1]) * k + 1)
        args = (H.node_off_local, lay.c, lay.r, lay.red, lay.sk_ptr, lay.sk_pos,
                lay.rd_ptr, lay.rd_pos, lay.T_ptr, lay.T_data, lay.L_ptr, self.L_data,
                lay.G_ptr, self.G_data)
        lo_lev = max(own.sub_level, 1)
        H._x.call("solve")
        with blas_single_thread():
            for lev in range(L, lo_lev - 1, -1):
                nodes = H.levels[lev]
                wptr, work = lay.work(nodes, lay.c * k)
                solve_up_level(nodes, lev == L, k, B2, *args, bhat, wbuf, wptr, work, nt)
            for entry in own.path:
                a = entry[0]
                H._swap_rows("solve", entry, bhat, lay.sk_ptr, lay.r, k)
                if a > 0:
                    nodes = np.array([a], np.int64)
                    wptr, work = lay.work(nodes, lay.c * k)
                    solve_up_level(nodes, False, k, B2, *args, bhat, wbuf, wptr, work, nt)
            solve_root(L == 0, k, B2, X, H.node_off_local, lay.c, lay.r, lay.sk_ptr, bhat,
                       self.Lroot, np.empty(int(lay.c[0]) * k + 1))
            for entry in reversed(own.path):
                if entry[0] > 0:
                    nodes = np.array([entry[0]], np.int64)
                    wptr, work = lay.work(nodes, lay.c * k + lay.r * k)
                    solve_down_level(nodes, False, k, X, *args, bhat, wbuf, wptr, work, nt)
            for lev in range(lo_lev, L + 1):
                nodes = H.levels[lev]
                wptr, work = lay.work(nodes, lay.c * k + lay.r * k)
                solve_down_level(nodes, lev == L, k, X, *args, bhat, wbuf, wptr, work, nt)
        return X[:, 0] if vec else X

    def logdet(self):
        return self._logdet

    @property
    def nbytes(self):
        lay = self._lay
        return int(self.L_data.nbytes + self.G_data.nbytes + self.Lroot.nbytes
                   + lay.T_data.nbytes + lay.B_data.nbytes)


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
