"""Factorization of shift*I + H~ (the HSS part) and its solve.

Recursive skeletonization in interpolative form: at every node the redundant
indices are decoupled from the rest by the congruence [[I, 0], [-T, I]] built from
the node's own ID coefficients, eliminated by a Cholesky factorization, and the
Schur complement on the skeleton goes to the parent. No new entries are needed: a
new shift is one O(N s^2) pass over blocks already stored.

For budget = 0 the factored matrix is exactly the HSSMatrix (the solve inverts
``H @`` to round-off). With a near field (budget > 0) only its HSS part (diagonal
leaf blocks, sibling couplings, bases) is factored: a preconditioner for CG on the
full matrix.
"""
import time

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ..kernels.factor import (
    Factors,
    Layout,
    factor_level,
    factor_root,
    gather_B,
    gather_T,
    logdet_sum,
    solve_down_level,
    solve_root,
    solve_up_level,
)
from ..util.blocks import exclusive_cumsum, pointers
from ..util.threads import blas_single_thread, effective_n_threads
from ..util.validation import check_float
from . import io


class FactorizationError(ValueError):
    """shift*I + H~ is not positive definite at some node."""

    def __init__(self, message, node, level, shift):
        super().__init__(message)
        self.node = node
        self.level = level
        self.shift = shift


# doubles of workspace per factor_level call (32 MB): levels are eliminated in
# groups of nodes of about this much work
WORK_CHUNK = 1 << 22


class _Layout:
    """Shift-independent arrays of the factorization, built once per HSSMatrix."""

    def __init__(self, H, nt=1):
        tree = H.tree
        n_nodes = tree.n_nodes
        fl = tree.first_leaf
        r = H.rank.astype(np.int64).copy()
        r[0] = 0
        c = H.ncols
        red = c - r
        red[0] = 0
        self.c, self.r, self.red = c, r, red
        self.sk_ptr = H.skel_ptr
        self.sk_pos = H.skel_pos
        self.rd_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
        self.rd_ptr[1:] = np.cumsum(red)
        # redundant positions of every node (its columns that are not skeleton),
        # ascending, and T = P[:, redundant] column-major: all nodes at once
        col0 = pointers(c)[:-1]
        is_skel = np.zeros(int(c.sum()), dtype=bool)
        owner = np.repeat(np.arange(n_nodes, dtype=np.int64), H.rank)
        is_skel[col0[owner] + H.skel_pos] = True
        is_skel[col0[0]:col0[0] + c[0]] = True           # the root has no T
        flat = np.flatnonzero(~is_skel)
        node_of = np.repeat(np.arange(n_nodes, dtype=np.int64), c)[flat]
        self.rd_pos = (flat - col0[node_of]).astype(np.int64)
        self.T_ptr = pointers(r * red)
        self.T_data = np.empty(int(self.T_ptr[-1]))
        nodes = np.arange(1, n_nodes, dtype=np.int64)
        gather_T(nodes, r, c, red, H.proj_ptr, H.proj, self.rd_ptr, self.rd_pos,
                 self.T_ptr, self.T_data, nt)
        self.L_ptr = pointers(red * red)
        self.G_ptr = pointers(red * r)
        self.Z_ptr = pointers(r * r)
        self.diag_off = H.diag_blk
        # sibling couplings B = K(skel l, skel r), column-major, per parent
        inner = np.arange(fl)
        self.B_ptr = pointers(np.r_[r[2 * inner + 1] * r[2 * inner + 2],
                                np.zeros(n_nodes - fl, np.int64)].astype(np.int64))
        # each parent's block comes from the far pairs or the extra couplings
        self.B_data = np.empty(int(self.B_ptr[-1]))
        for pairs, offsets, data in ((H.far_pairs, H.far_pair_off, H.far_data),
                                     (H.sib_pairs, H.sib_off, H.sib_data)):
            sib = (pairs[:, 1] == pairs[:, 0] + 1) & (pairs[:, 0] % 2 == 1)
            par = ((pairs[sib, 0] - 1) // 2).astype(np.int64)
            gather_B(par, np.ascontiguousarray(offsets[sib], dtype=np.int64), data,
                     H.rank, self.B_ptr, self.B_data, nt)
        # the same arrays as one typed object for the kernels
        self.kernel = Layout(c, r, red, self.sk_ptr, self.sk_pos, self.rd_ptr, self.rd_pos,
                             self.T_ptr, self.T_data, self.diag_off, self.B_ptr,
                             self.B_data, self.L_ptr, self.G_ptr, self.Z_ptr)

    def work(self, nodes, per_node):
        sizes = per_node[nodes]
        return exclusive_cumsum(sizes), np.empty(int(sizes.sum()) + 1)

    def work_chunks(self, nodes, per_node, cap=WORK_CHUNK):
        """``nodes`` in consecutive groups whose workspace is about ``cap`` doubles
        (at least one node each), all in one shared buffer: [(nodes, wptr, work)].
        Each node's elimination reads and writes its own slice only, so the result
        does not depend on the grouping; the workspace of a whole leaf level (twice
        the leaf blocks) would be the factorization's largest buffer."""
        sizes = per_node[nodes].astype(np.int64)
        start = np.cumsum(sizes) - sizes
        bounds = np.r_[0, np.flatnonzero(np.diff(start // cap)) + 1, nodes.size]
        totals = [int(sizes[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]
        work = np.empty(max(totals, default=0) + 1)
        out = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            out.append((nodes[a:b], exclusive_cumsum(sizes[a:b]), work))
        return out


class HSSFactorization:
    """Factorization of ``shift*I + H~`` (HSS part). Built by ``H.factorize``;
    ``solve(B)``, ``logdet()``, ``as_linear_operator()`` (one process).

    One algorithm for one process and for P ranks (``H.own``): the levels of the
    rank's subtree are eliminated bottom-up, a group of nodes at a time; then each
    shared ancestor, by every rank of its group after swapping the children's Schur
    complements (r x r); the root's block is factored by everyone. A failed pivot is
    known to every rank before any swap. ``solve(B)`` takes and returns vectors laid
    out as ``H @`` does (user order with one process, this rank's rows of the tree
    order with P ranks). Collective.
    """

    def __init__(self, H, shift=0.0, n_threads=None, diagonal=None):
        """``diagonal``: the diagonal added to H~'s HSS part in this rank's rows of
        the tree order, in place of its compensation (the search for the
        compensation, :func:`psd_compensation`); an empty array for none."""
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
        if diagonal is None:
            diagonal = H.compensation_rows(factored=True)
        dshift = np.zeros(0) if diagonal is None else diagonal
        nt = effective_n_threads(n_threads)
        t0 = time.perf_counter()
        lay = self._lay = H._caches.get("factor_layout", lambda: _Layout(H, nt))
        t1 = time.perf_counter()
        own, L = H.own, H.n_levels
        # (one double more than the nodes need: a rank may hold none of a kind)
        self.L_data = np.empty(int(lay.L_ptr[-1]) + 1)
        self.G_data = np.empty(int(lay.G_ptr[-1]) + 1)
        Z = np.empty(int(lay.Z_ptr[-1]) + 1)
        info = np.zeros(H.tree.n_nodes, dtype=np.int64)
        off = H.node_off_local
        self._factors = Factors(self.L_data, self.G_data, Z)
        kl, kf = lay.kernel, self._factors

        def level(nodes, leaf):
            """Eliminate ``nodes`` (one level); the first failed node or None."""
            for part, wptr, work in lay.work_chunks(nodes,
                                                    lay.c * lay.c + lay.red * lay.red):
                factor_level(part, leaf, self.shift, dshift, off, H.near_data, kl, kf,
                             wptr, work, info, nt)
            b = nodes[info[nodes] != 0]
            return None if b.size == 0 else int(b[0])

        bad = None
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
            if bad is None and all(b is None for b in bads):
                rinfo = factor_root(L == 0, self.shift, dshift, H.near_data, kl, kf,
                                    self.Lroot)
                if rinfo != 0:
                    bad = 0
            bads = H.comm.gather(bad)
        failed = [(r, b) for r, b in enumerate(bads) if b is not None]
        if failed:
            self._raise_failed(*failed[0])
        # log det: each node counted once (a shared node by the first rank of its group)
        mine = np.zeros(H.tree.n_nodes, dtype=np.int64)
        for lev in range(max(own.sub_level, 1), L + 1):
            mine[H.levels[lev]] = lay.red[H.levels[lev]]
        for a in own.ancestors:
            if own.group[a][0] == H.rank_id and a > 0:
                mine[a] = lay.red[a]
        c0 = int(lay.c[0]) if H.rank_id == 0 else 0
        self._logdet = 2.0 * H.comm.sum(logdet_sum(kl, kf, mine, self.Lroot, c0))
        t2 = time.perf_counter()
        self.times = {"layout": t1 - t0, "factor": t2 - t1}

    def _raise_failed(self, rank, a):
        """The FactorizationError of node ``a`` (failed on ``rank``), on every rank."""
        lev = int(np.floor(np.log2(a + 1)))
        on = f", on rank {rank}" if self.H.size > 1 else ""
        if a == 0:
            what = "the root block" + (f" (on rank {rank})" if on else "")
        else:
            what = f"the pivot block of node {a} (level {lev}{on})"
        raise FactorizationError(
            f"factorize: {what} is not positive definite for shift = {self.shift:g}: "
            f"shift*I + H~ is not SPD{self._advice()}.", a, lev, self.shift)

    def _advice(self):
        """What to do, given how H was built (the shift is absolute)."""
        H = self.H
        d = H._diagonal_rows()
        diag = H.comm.max(float(np.max(np.abs(d))) if d.size else 0.0)
        out = (f" (the shift is absolute, added to the diagonal, whose largest entry is "
               f"{diag:.3g}; factorize(shift, relative=True) scales it by |H~|_2)")
        if H.params.get("spd", False):
            floor = SPD_FLOOR * diag
            if self.shift < floor:
                return out + (f". H~ was made positive semi-definite: any shift >= "
                              f"{floor:.3g} factors")
            return out + (". H~ was made positive semi-definite and factored at "
                          "smaller shifts: please report this")
        out += (". H~ was compressed with spd=False and is indefinite by about its "
                "truncation error: compress with spd=True (the default), or use a "
                "larger shift")
        if H.truncated:
            out += (f"; {len(H.truncated)} node(s) were capped "
                    f"({H.truncated[0].get('cause', 'max_rank')}), so raising that cap "
                    f"lowers the error")
        return out

    # ------------------------------------------------------------------ solve
    def solve(self, B, n_threads=None):
        """X = (shift*I + H~)^-1 B for B laid out as for ``H @`` (one process: shape
        (N,) or (N, k), user order). Collective."""
        H = self.H
        B2, finish = H._rows_in(B, "B", f"{type(self).__name__}.solve")
        k = B2.shape[1]
        X = np.empty_like(B2)
        if k == 0:
            return finish(X)
        nt = effective_n_threads(n_threads)
        lay, own, L = self._lay, H.own, H.n_levels
        bhat = np.empty(int(lay.sk_ptr[-1]) * k + 1)
        wbuf = np.empty(int(lay.rd_ptr[-1]) * k + 1)
        args = (H.node_off_local, lay.kernel, self._factors)
        lo_lev = max(own.sub_level, 1)

        def up(nodes, leaf):
            wptr, work = lay.work(nodes, lay.c * k)
            solve_up_level(nodes, leaf, k, B2, *args, bhat, wbuf, wptr, work, nt)

        def down(nodes, leaf):
            wptr, work = lay.work(nodes, lay.c * k + lay.r * k)
            solve_down_level(nodes, leaf, k, X, *args, bhat, wbuf, wptr, work, nt)

        H._x.call("solve")
        with blas_single_thread():
            for lev in range(L, lo_lev - 1, -1):
                up(H.levels[lev], lev == L)
            for entry in own.path:
                H._swap_rows("solve", entry, bhat, lay.sk_ptr, lay.r, k)
                if entry[0] > 0:
                    up(np.array([entry[0]], np.int64), False)
            solve_root(L == 0, k, B2, X, H.node_off_local, lay.kernel, bhat, self.Lroot,
                       np.empty(int(lay.c[0]) * k + 1))
            for entry in reversed(own.path):
                if entry[0] > 0:
                    down(np.array([entry[0]], np.int64), False)
            for lev in range(lo_lev, L + 1):
                down(H.levels[lev], lev == L)
        return finish(X)

    def save(self, path):
        """Write the factored matrix and its shift to ``path`` (see
        :mod:`hsspetsc.matrix.io`); ``hsspetsc.load(path)`` factors it again. One process
        only."""
        return io.save(self, path)

    def _archive(self):
        archive = getattr(self.H, "_archive", None)
        if archive is None:
            raise TypeError("save: a factorization of a distributed matrix has no file "
                            "format; save the serial matrix of the same source instead.")
        return archive("factorization", {"shift": np.float64(self.shift)})

    def logdet(self):
        """log det(shift*I + H~) = sum of 2 log diag of all Cholesky factors."""
        return self._logdet

    def as_linear_operator(self):
        """The inverse as a scipy LinearOperator (e.g. a preconditioner for cg); one
        process only (scipy's operators hold whole vectors)."""
        if self.H.size > 1:
            raise TypeError("as_linear_operator: a factorization across ranks takes "
                            "each rank's rows; use solve, or hsspetsc.petsc's HSSPC.")
        return LinearOperator((self.n, self.n), matvec=self.solve, rmatvec=self.solve,
                              matmat=self.solve, rmatmat=self.solve, dtype=np.float64)

    @property
    def nbytes(self):
        lay = self._lay
        return int(self.L_data.nbytes + self.G_data.nbytes + self.Lroot.nbytes
                   + lay.T_data.nbytes + lay.B_data.nbytes)

    def stats(self):
        return {"N": self.n, "shift": self.shift, "bytes": self.nbytes,
                "root_size": int(self._lay.c[0]), "logdet": self._logdet,
                "time": dict(self.times)}

    def __repr__(self):
        return (f"HSSFactorization(N={self.n}, shift={self.shift:g}, "
                f"root {int(self._lay.c[0])}x{int(self._lay.c[0])}, "
                f"{self.nbytes / 1e6:.1f} MB, factor {self.times['factor']:.3f} s)")


SPD_FLOOR = 1e-12        # shifts below this x max diag are rounding level


def psd_compensation(H, support, tol, n_threads=None, guess=None, near=None):
    """The smallest diagonal compensation (found to a factor 1.5) that makes the
    hierarchical part of H positive semi-definite, certified by the factorization.

    ``guess``: a compensation expected to suffice (the estimated |K - H|_F bounds the
    one an SPD source needs, since H >= K - E >= -|E|_2 I); it saves most of the
    search. ``near``: the compensation a closely related matrix needed (the same
    skeletons, refreshed blocks): tried first, and when it works and near / 1.5 does
    not, it is the answer after two factorizations. Returns (delta, factorizations
    tried), delta None when nothing up to 1e6 x max
    diag works (not a PSD matrix): H~ = H + delta * diag(support) is PSD to
    rounding, i.e. lambda I + H~ factors for every lambda >= SPD_FLOOR * max diag.
    Why: the elimination of factorize() is an exact block Cholesky of lambda I + H
    (plain HSS), so it succeeds exactly when that matrix is positive definite, and
    success at one shift implies success at every larger one. Zero rows of H (zero
    diagonal, ``support`` False) stay exactly zero: only lambda acts there.
    delta = 0 when H already factors at the floor shift; the result of an SPD source
    is then within rounding of it, otherwise delta is at most about the truncation
    error |K - H~|_2 (H~ >= K - E >= -|E| I)."""
    scale = H.max_diagonal()
    sup = H.tree_rows(np.asarray(support, dtype=np.float64))
    if scale <= 0:
        return 0.0, 0
    floor = SPD_FLOOR * scale
    tried = [0]

    def factors(delta):
        tried[0] += 1
        try:
            HSSFactorization(H, floor, n_threads, diagonal=delta * sup)
            return True
        except FactorizationError:
            return False

    lo, hi = 0.0, (guess if guess and guess > floor else max(tol, 1e-10) * scale)
    hi_ok = False
    if near is not None and near > 0:
        if factors(near):
            if not factors(near / 1.5):
                return near, tried[0]
            hi, hi_ok = near / 1.5, True
        else:
            lo, hi = near, 1.5 * near
    if lo == 0.0 and factors(0.0):
        return 0.0, tried[0]
    while not hi_ok and not factors(hi):
        lo, hi = hi, 10.0 * hi
        if hi > 1e6 * scale:
            return None, tried[0]
    lo = lo if lo > 0 else hi * 1e-4
    while hi > 1.5 * lo:                   # refine in log space: within 1.5x
        mid = float(np.sqrt(lo * hi))
        if factors(mid):
            hi = mid
        else:
            lo = mid
    return hi, tried[0]

