"""What every new H~ goes through before a user sees it, on one process or P ranks.

:func:`contract` checks the leaf blocks' 2 x 2 minors (``spd``), estimates the
error from a few exact rows (entries path) or products (sketch path) (``probes``),
with a shift also |K - H~|_2 / shift, and finds the diagonal compensation that
makes H~ positive semi-definite (``spd``, certified by factorizations).
:func:`finish` runs it and puts its figures and the construction's counts into the
matrix's info; :func:`warn_misses` says when tol was missed and what to do.

One code for both matrices: vectors are laid out as the matrix's ``matvec`` takes
them (all N rows with one process, this rank's rows with P ranks) and every sum
goes through the matrix's communicator, so a figure is the same on every rank.
"""
import warnings

import numpy as np

from ..matrix.accuracy import gram_estimate, spread_bounds
from ..matrix.factor import psd_compensation
from ..matrix.hss import HSSMatrix
from .sketch import products
from .tree import PHASE_CHECK, PHASE_SKETCH, phase_key


class _Probes:
    """The exact probes of the error estimate in the matrix's layout: for p sampled
    rows S, K(S, my columns) against the unit vectors e_S; for p Gaussian products
    Z, K Z against Z. ``diff(H)`` is the p x m block of H~'s error on them."""

    def __init__(self, H, ctx):
        p, n = ctx.params, H.n
        self.comm = H.comm
        if ctx.path == "entries":
            check = np.random.default_rng(phase_key(p["seed"], PHASE_CHECK, 1))
            rows = np.sort(check.choice(n, min(n, p["probes"]), replace=False))
            rows = rows.astype(np.int64)
            cols = np.ascontiguousarray(H._operand_of(np.arange(n, dtype=np.int64)))
            exact, _ = ctx.reader.read([0], [rows.size], rows, [0], [cols.size], cols)
            self.exact = exact.reshape(rows.size, cols.size)      # K(S, my columns)
            self.E = np.zeros((cols.size, rows.size))
            hit = np.flatnonzero(np.isin(cols, rows))
            self.E[hit, np.searchsorted(rows, cols[hit])] = 1.0
            self.norm = self.fro(self.exact)
            self.scale = np.sqrt(n / rows.size)       # |E(S, :)|_2 -> |E|_2
            self.fro_of_error = lambda est: est * self.norm * self.scale
        else:
            rng = np.random.default_rng(phase_key(p["seed"], PHASE_SKETCH, 1))
            Z = rng.standard_normal((n, p["probes"]))
            KZ = products(ctx.source, Z, ctx.where)
            ctx.reader.products += p["probes"]
            self.Z = np.ascontiguousarray(H._operand_of(Z))
            self.KZ = np.ascontiguousarray(H._operand_of(KZ))
            del Z, KZ
            self.E = None
            self.norm = self.fro(self.KZ)
            self.scale = 1.0 / np.sqrt(p["probes"])
            self.fro_of_error = lambda est: est * self.norm / np.sqrt(p["probes"])

    def diff(self, H):
        """H~'s error on the probes, p x m (a view)."""
        if self.E is not None:
            return H.matvec(self.E).T - self.exact        # H~ is symmetric: rows S
        return (self.KZ - H.matvec(self.Z)).T

    def fro(self, x):
        """|x|_F over every rank (one process: numpy's norm, to the bit)."""
        x = x.ravel(order="K")
        return float(np.sqrt(self.comm.sum(float(x.dot(x)))))

    def relative(self, d):
        """The relative Frobenius estimate |K - H~|_F / |K|_F from the error d."""
        return self.fro(d) / self.norm if self.norm > 0 else 0.0

    def spectral(self, d):
        """The estimate of |K - H~|_2 from the error d, through its p x p Gram
        matrix summed over the ranks."""
        return gram_estimate(np.asarray(self.comm.sum(d @ d.T)), self.scale)


def contract(H0, ctx, near=None):
    """The contract of a freshly built H0 (see the module docstring); returns (H,
    info entries). ``near``: the compensation a closely related matrix needed (see
    :func:`~hsspetsc.matrix.factor.psd_compensation`). Collective."""
    p = ctx.params
    out = {"compensation": 0.0, "spd_factorizations": 0, "spd_certified": False,
           "error_estimate": None, "error_estimate_uncompensated": None,
           "indefinite_source": False}
    if p["spd"]:
        err = None
        try:
            check_leaf_minors(H0, ctx.where)
        except ValueError as exc:
            err = exc
        H0.comm.agree(err)
    support = ctx.diagonal > 0
    factor_only = p["budget"] > 0          # the near field is not factored: see spd
    shift = p.get("shift")
    probes = _Probes(H0, ctx) if p["probes"] else None
    guess = err_fro = None
    if probes is not None:
        d0 = probes.diff(H0)
        est0 = probes.relative(d0)
        err_fro = probes.fro_of_error(est0)        # estimated |K - H0|_F
        guess = 2 * err_fro
        if shift:
            # an SPD source needs at most |E|_2: the spectral estimate is the tighter
            # guess
            err2_0 = probes.spectral(d0)
            guess = 2 * err2_0 if err2_0 > 0 else guess
        del d0
    delta = 0.0
    H = H0
    if p["spd"]:
        delta, out["spd_factorizations"] = psd_compensation(
            H0, support, p["tol"], ctx.n_threads, guess=guess, near=near)
        if delta is None and not factor_only:
            where = "compress" if ctx.path == "entries" else "compress_sketch"
            raise ValueError(
                f"{where}: no diagonal compensation up to 1e6 x the largest diagonal "
                f"entry makes H~ positive definite: the source is not positive "
                f"semi-definite (a negative eigenvalue, or a zero diagonal entry in a "
                f"nonzero row). Compress with spd=False to keep it as it is.")
        # with a near field the HSS part alone may be too coarse to certify at all:
        # then H~ is kept as it is and the factorization may need a larger shift
        out["spd_certified"] = delta is not None
        delta = delta or 0.0
        out["compensation"] = delta
        if delta > 0:
            # with a near field only the factored HSS part (the preconditioner) can
            # be certified, so only it is compensated
            H = H0.with_compensation(delta * support, H0._info, factor_only)
    if probes is None:
        return H, out
    # the error of the compensated H~ (its matvec; with a near field only its
    # factored part is compensated, so the relative error stays est0)
    d = probes.diff(H) if H is not H0 and (shift or not factor_only) else None
    if shift:
        out["shift_error"] = (err2_0 if H is H0 else probes.spectral(d)) / shift
        out["shift_spread"] = spread_bounds(out["shift_error"])
    out["error_estimate_uncompensated"] = est0
    out["error_estimate"] = est0 if H is H0 or factor_only else probes.relative(d)
    # an SPD source needs a compensation of at most about |E|_2 <= |E|_F
    out["indefinite_source"] = bool(not factor_only and delta > 3.0 * err_fro)
    return H, out


def finish(H, ctx, near=None):
    """H after its contract, with the contract's figures and the construction's
    counts (summed over the ranks) in its info. Collective."""
    ph, reader, n = ctx.phases, ctx.reader, H.n
    ph.start()
    H, out = contract(H, ctx, near=near)
    ph.done("contract")
    ph.total()
    read = H.comm.sum(float(reader.count))
    info = dict(H._info, **out)
    info.update({"entries_fraction": (read + reader.products * n) / float(n) ** 2,
                 "entries_evaluated": int(read), "products": reader.products,
                 "source_calls": reader.calls, "time": dict(ph.times)})
    if not isinstance(H, HSSMatrix):
        info["entries_evaluated_here"] = int(reader.count)
    return H.with_info(info)


def check_leaf_minors(H, where):
    """A PSD matrix has K_ij^2 <= K_ii K_jj (2 x 2 principal minors); check it on the
    leaf blocks this rank holds, read exactly anyway (a zero diagonal entry in a
    nonzero row fails)."""
    tree, leaves = H.tree, H.leaves
    off = H.node_off_local

    def indices(a):                     # the original indices of leaf a
        return H.local_indices[off[a]:off[a] + tree.node_size[a]]

    for m, sel in ((m, leaves[tree.node_size[leaves] == m]) for m in
                   np.unique(tree.node_size[leaves])):
        # leaves in groups of about 2^20 entries: the temporaries stay small next to
        # the leaf blocks themselves
        step = max(1, (1 << 20) // (int(m) * int(m)))
        for sel in (sel[c:c + step] for c in range(0, sel.size, step)):
            _check_minors_of(H, where, sel, m, indices)


def _check_minors_of(H, where, sel, m, indices):
    """check_leaf_minors on the leaves ``sel``, all of size m."""
    idx = H.diag_blk[sel][:, None] + np.arange(m * m)[None, :]
    D = H.near_data[idx].reshape(-1, m, m)
    d = np.einsum("bii->bi", D)
    bound = np.abs(d[:, :, None] * d[:, None, :])
    bad = D * D > bound * (1 + 1e-8) + 1e-300
    if bad.any():
        b, i, j = (int(x[0]) for x in np.nonzero(bad))
        I = indices(sel[b])
        raise ValueError(
            f"{where}: the source is not positive semi-definite: "
            f"K[{I[i]}, {I[j]}]^2 = {D[b, i, j] ** 2:.3g} > K[{I[i]}, {I[i]}] "
            f"K[{I[j]}, {I[j]}] = {bound[b, i, j]:.3g}. Compress with spd=False to "
            f"keep it as it is.")


def warn_misses(H, ctx, stacklevel):
    """One RuntimeWarning (on rank 0) when tol is missed (capped nodes, or the
    estimate above 10 tol) or the source looks indefinite, naming the remedy that
    applies. ``stacklevel``: the user's call of the front door, seen from the
    caller of this function."""
    if H.comm.rank != 0:
        return
    s, p, path, where = H._info, ctx.params, ctx.path, ctx.where
    msgs = []
    capped = s["truncated_nodes"]
    if capped:
        cause = capped[0].get("cause", "max_rank")
        worst = max(t["achieved"] for t in capped)
        remedy = {"max_rank": f"raise max_rank (now {p['max_rank']}) or pass "
                              f"max_rank=None",
                  "memory": f"raise memory (now {p.get('memory', 0) / 2 ** 30:.3g} GiB)",
                  "samples": f"raise samples (now {p.get('samples')}; a rank within 10 "
                             f"of it is not certified) and max_rank"}[cause]
        if p.get("shift"):
            what = (f"tol = {p['tol']:.3g} x shift, dropping up to {worst / p['tol']:.3g} "
                    f"times their threshold")
        else:
            what = f"tol = {p['tol']:.1e}, dropping up to {worst:.1e} of their block"
        msgs.append(f"{len(capped)} node(s) stopped at their rank cap ({cause}) before "
                    f"{what}; {remedy}, or accept")
    est = s.get("error_estimate")
    shift_est = s.get("shift_error")
    if p.get("shift"):
        est = None                  # the relative Frobenius error is not the target
        if shift_est is not None and shift_est > 10 * p["tol"]:
            msgs.append(f"the estimated |K - H~|_2 / shift = {shift_est:.3g} is above "
                        f"10 x tol = {10 * p['tol']:.3g}: "
                        + ("raise the ranks (see above)" if capped else
                           "compress again (the kept skeletons no longer fit)"
                           if where == "refresh" else "add a near field (budget > 0) "
                           "or more neighbors" if path == "entries" else "raise samples")
                        + ", or accept")
    if est is not None and est > 10 * p["tol"]:
        remedy = ("the skeletons kept from another matrix no longer fit it: compress "
                  "again" if where == "refresh" else
                  "raise the ranks (see above)" if capped else
                  "the sampled rows missed part of the off-diagonal blocks: add a near "
                  "field (budget > 0) or more neighbors" if path == "entries" else
                  "raise samples")
        msgs.append(f"the estimated relative error {est:.1e} is above 10 x tol = "
                    f"{10 * p['tol']:.1e}: {remedy}, or accept")
    # the distributed sizes are collective: checked on one rank only for the serial H~
    sizes = H.stats() if isinstance(H, HSSMatrix) else {}
    stored, dense = sizes.get("stored_bytes"), sizes.get("dense_bytes")
    if stored is not None and dense and stored > dense:
        msgs.append(f"H~ stores {stored / 2 ** 20:.1f} MB, more than the dense matrix "
                    f"({dense / 2 ** 20:.1f} MB): at this accuracy the dense matrix is "
                    f"the better answer (hsspetsc.solve(..., method='dense')), or pass "
                    + ("a larger tol" if p.get("shift") else "shift=lam or a larger tol"))
    if s.get("indefinite_source"):
        msgs.append(f"H~ needed a diagonal compensation of {s['compensation']:.3g}, more "
                    f"than its compression error explains: the source is probably not "
                    f"positive semi-definite")
    if msgs:
        # stacklevel: the user's call of compress / compress_sketch / refresh
        warnings.warn(f"{where}: " + "; ".join(msgs) + ".", RuntimeWarning,
                      stacklevel=stacklevel + 1)
