"""Solving (lam I + K) x = y: dense, HSS direct, or CG on the exact operator
preconditioned by an HSS factorization.

:func:`solve` is the one entry point. Its methods:

- ``"dense"``: K formed (from its entries, or the given array), one Cholesky of
  lam I + K. Exact; O(N^2) memory and O(N^3) time, so only where 8 N^2 bytes fit
  ``memory``.
- ``"hss"``: H~ = compress(K, shift=lam, tol=c), one O(N) factorization of
  lam I + H~ and its solve. With c < 1 the answer is within about c/(1 - c) of the
  exact one in the lam I + K norm; its residual against the exact system is
  measured on ``check_rows`` exact rows of K (``info["residual"]``).
- ``"pcg"``: conjugate gradients on the exact operator lam I + K, preconditioned by
  (lam I + H~)^-1 with H~ compressed cheaply (shift-aware, ``precond_tol``), to
  the requested relative residual. Products with K come from the source's
  ``matmat`` (a dense array, a Gauss-Newton matrix), from K formed once when it
  fits ``memory``, or else from rows of K evaluated block by block at every
  iteration (N^2 entries each). By |K - H~|_2 <= c lam the preconditioned matrix
  has condition number at most (1 + c)/(1 - c), so CG needs about
  sqrt(kappa)/2 ln(2/tol) iterations (3 at c = 0.1, tol 1e-6 ... ~15 at c = 0.5).
  This is how FALKON and GPyTorch solve kernel systems, with a Nystrom or
  pivoted-Cholesky preconditioner instead.
- ``"auto"`` (default): ``"dense"`` below 4096 unknowns (where it is both exact and
  fastest) and ``"pcg"`` above, falling back to ``"dense"`` when the compression is
  refused by its work cap (:class:`hsspetsc.IncompressibleError`) and the dense
  matrix fits.

Every method returns ``(x, info)``: x has the shape of y (one or several right-hand
sides); ``info`` holds the method, the iterations, the achieved relative residual
|y - (lam I + K) x| / |y| per column (max), the time of each phase and, for the HSS
methods, the compression's stats.
"""
import time
import warnings

import numpy as np
import scipy.linalg

from .compression.compress import compress
from .compression.params import default_memory
from .sources import DenseSource, as_source
from .util.blocks import IncompressibleError
from .util.threads import effective_n_threads
from .util.validation import as_float_array, check_choice, check_float, check_int

METHODS = ("auto", "dense", "hss", "pcg")
DENSE_BELOW = 4096          # "auto": the dense Cholesky up to this order
ROW_CHUNK_BYTES = 128 * 2 ** 20


class SolveInfo(dict):
    """What :func:`solve` did: ``method``, ``iterations`` (CG; 0 for the direct
    methods), ``residual`` (max over columns of |y - (lam I + K) x| / |y|, exact, or
    on ``check_rows`` exact rows for "hss"), ``residual_rows`` (None: all rows),
    ``converged``, ``times`` (seconds per phase), ``history`` (CG: the largest
    relative residual per iteration), ``hss_stats`` (the compression's stats)."""

    def __repr__(self):
        t = ", ".join(f"{k} {v:.3g} s" for k, v in self["times"].items())
        return (f"SolveInfo(method={self['method']!r}, iterations={self['iterations']}, "
                f"residual={self['residual']:.3g}, converged={self['converged']}; {t})")


class ExactOperator:
    """Products with K for CG: the source's own ``matmat`` or array, K formed once
    when it fits ``memory`` bytes, or rows of K evaluated in blocks per product."""

    def __init__(self, src, memory, n_threads):
        self.src, self.n = src, src.n
        self.K = None
        self.how = "matmat"
        if isinstance(src, DenseSource):
            self.K, self.how = src.A, "array"
        elif not callable(getattr(src, "matmat", None)):
            if 8.0 * self.n ** 2 <= memory:
                self.K, self.how = src.to_dense(max_n=self.n), "formed"
            else:
                self.how = "rows"
        self.products = 0

    def matmat(self, V):
        self.products += V.shape[1]
        if self.K is not None:
            return self.K @ V
        if self.how == "matmat":
            return np.asarray(self.src.matmat(V), dtype=np.float64).reshape(V.shape)
        n = self.n
        out = np.empty_like(V)
        step = max(1, int(ROW_CHUNK_BYTES // (8 * n)))
        cols = np.arange(n)
        for r0 in range(0, n, step):
            rows = np.arange(r0, min(n, r0 + step))
            out[rows] = self.src.entries(rows, cols) @ V
        return out


def pcg(apply_A, apply_M, B, rtol, max_iter, callback=None):
    """Preconditioned CG on the columns of B at once (each its own step lengths;
    a column stops when its relative residual is at most ``rtol``). Returns
    (X, iterations, history of the largest relative residual)."""
    X = np.zeros_like(B)
    R = B.copy()
    bnorm = np.linalg.norm(B, axis=0)
    bnorm[bnorm == 0] = 1.0
    Z = apply_M(R)
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    active = np.linalg.norm(R, axis=0) / bnorm > rtol
    history = [float(np.max(np.linalg.norm(R, axis=0) / bnorm))]
    it = 0
    while active.any() and it < max_iter:
        it += 1
        a = np.flatnonzero(active)
        AP = apply_A(P[:, a])
        pAp = np.einsum("ij,ij->j", P[:, a], AP)
        if np.any(pAp <= 0):
            raise np.linalg.LinAlgError(
                "solve: CG met a direction of non-positive curvature: lam I + K is "
                "not positive definite (is the source PSD?).")
        alpha = rz[a] / pAp
        X[:, a] += P[:, a] * alpha
        R[:, a] -= AP * alpha
        Za = apply_M(R[:, a])
        rz_new = np.einsum("ij,ij->j", R[:, a], Za)
        beta = rz_new / rz[a]
        rz[a] = rz_new
        P[:, a] = Za + P[:, a] * beta
        rel = np.linalg.norm(R, axis=0) / bnorm
        history.append(float(np.max(rel)))
        active = rel > rtol
        if callback is not None:
            callback(it, history[-1])
    return X, it, history


def _check_inputs(source, y, shift, tol, method, where):
    src = as_source(source, where)
    n = src.n
    y = as_float_array(y, "y", where)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"The 'y' parameter of {where} must have shape ({n},) or "
                         f"({n}, k) for a source of order {n}. Got shape {y.shape} "
                         f"instead.")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"The 'y' parameter of {where} must be finite. Got NaN or Inf.")
    shift = check_float(shift, "shift", where, lo=0.0, lo_open=True)
    tol = check_float(tol, "tol", where, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    method = check_choice(method, "method", where, METHODS)
    return src, y, shift, tol, method


def _dense_solve(src, Y, shift, memory, times):
    n = src.n
    if 8.0 * n ** 2 > memory:
        raise MemoryError(f"solve(method='dense'): the dense matrix needs "
                          f"{8.0 * n ** 2 / 2 ** 30:.3g} GiB, more than memory = "
                          f"{memory / 2 ** 30:.3g} GiB: use method='hss' or 'pcg'.")
    t = time.perf_counter()
    if isinstance(src, DenseSource):
        A = src.A.copy()
    else:
        A = src.to_dense(max_n=n)
    times["operator"] = time.perf_counter() - t
    t = time.perf_counter()
    A[np.diag_indices(n)] += shift
    try:
        # A.T: the Fortran-ordered view LAPACK factors in place (A is symmetric)
        cf = scipy.linalg.cho_factor(A.T, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError(
            f"solve: lam I + K is not positive definite at lam = {shift:g} (the "
            f"Cholesky factorization failed): is the source PSD?") from None
    times["factor"] = time.perf_counter() - t
    t = time.perf_counter()
    X = scipy.linalg.cho_solve(cf, Y, check_finite=False)
    times["solve"] = time.perf_counter() - t
    return X


def residual_on_rows(src, shift, X, Y, rows):
    """max over columns of |Y[rows] - ((lam I + K) X)[rows]| / |Y[rows]|, with the
    rows of K evaluated exactly (len(rows) x N entries)."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.arange(src.n)
    R = Y[rows] - (src.entries(rows, cols) @ X + shift * X[rows])
    den = np.linalg.norm(Y[rows], axis=0)
    den[den == 0] = 1.0
    return float(np.max(np.linalg.norm(R, axis=0) / den))


def solve(source, y, shift, tol=1e-6, method="auto", precond_tol=None, max_iter=200,
          check_rows=256, memory=None, seed=0, n_threads=None, verbose=False,
          **compress_options):
    """Solve (shift I + K) x = y (see the module docstring for the methods).

    Parameters
    ----------
    source : ndarray (N, N) or a source (:class:`hsspetsc.KernelSource`, ...)
        The SPD (or PSD) matrix K.
    y : ndarray (N,) or (N, k)
        Right-hand side(s).
    shift : float > 0
        lam: the ridge, the noise variance, the damping.
    tol : float in (0, 1), default 1e-6
        Relative residual CG is run to (``"pcg"``). The direct methods ignore it.
    method : "auto" (default), "dense", "hss" or "pcg"
    precond_tol : float in (0, 100] or None
        The share c of the shift for H~ (``compress(shift=lam, tol=c)``). Default:
        0.5 for "hss" (an approximate answer), 3 for "pcg" (a cheap preconditioner:
        fewer entries read; CG makes up the rest).
    max_iter : int >= 1
        CG iterations at most; if the residual is not met a RuntimeWarning says by
        how much.
    check_rows : int >= 0
        "hss": exact rows of K to measure the residual on (0: not measured).
    memory : float > 0 or None
        Bytes allowed for K if formed (default: a quarter of the machine's memory).
    seed, n_threads, verbose, **compress_options
        Passed to :func:`hsspetsc.compress` (e.g. ``leaf_size``, ``neighbors``).

    Returns
    -------
    x : ndarray, the shape of y
    info : :class:`SolveInfo`
    """
    where = "solve"
    src, Y, shift, tol, method = _check_inputs(source, y, shift, tol, method, where)
    vec = Y.ndim == 1
    Y2 = Y.reshape(src.n, -1)
    n = src.n
    max_iter = check_int(max_iter, "max_iter", where, lo=1)
    check_rows = check_int(check_rows, "check_rows", where, lo=0)
    memory = default_memory() if memory is None else check_float(
        memory, "memory", where, lo=0.0, lo_open=True)
    nt = effective_n_threads(n_threads, where)
    if method == "auto":
        method = "dense" if (n <= DENSE_BELOW and 8.0 * n ** 2 <= memory) else "pcg"
    if precond_tol is not None:
        precond_tol = check_float(precond_tol, "precond_tol", where, lo=0.0, hi=100.0,
                                  lo_open=True)
    times = {}
    info = SolveInfo(method=method, iterations=0, residual=np.nan, residual_rows=None,
                     converged=True, times=times, history=[], hss_stats=None)
    if method == "dense":
        X = _dense_solve(src, Y2, shift, memory, times)
        _residual(info, src, shift, X, Y2, check_rows, seed, times)
        return (X[:, 0] if vec else X), info
    c = precond_tol if precond_tol is not None else (0.5 if method == "hss" else 3.0)
    op, csrc = None, src
    if method == "pcg":
        # K formed for CG anyway: form it first, so the compression copies entries
        # instead of evaluating them a second time
        t = time.perf_counter()
        op = ExactOperator(src, memory, nt)
        times["operator"] = time.perf_counter() - t
        if op.how == "formed":
            csrc = DenseSource(op.K, points=src.points, trusted=True)
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # the preconditioner may miss its share: CG makes up for it
            if method == "pcg":
                warnings.simplefilter("ignore", RuntimeWarning)
            H = compress(csrc, shift=shift, tol=c, seed=seed, n_threads=nt,
                                  verbose=verbose, **compress_options)
    except IncompressibleError as e:
        if 8.0 * n ** 2 > memory:
            raise
        warnings.warn(f"solve: {e} Solving with the dense matrix instead.",
                      RuntimeWarning, stacklevel=2)
        info["method"] = "dense"
        formed = times.pop("operator", 0.0)
        X = _dense_solve(csrc, Y2, shift, memory, times)
        times["operator"] += formed
        _residual(info, csrc, shift, X, Y2, check_rows, seed, times)
        return (X[:, 0] if vec else X), info
    times["compress"] = time.perf_counter() - t
    info["hss_stats"] = H.stats()
    t = time.perf_counter()
    F = H.factorize(shift=shift, n_threads=nt)
    times["factor"] = time.perf_counter() - t
    if method == "hss":
        t = time.perf_counter()
        X = F.solve(Y2, n_threads=nt)
        times["solve"] = time.perf_counter() - t
        _residual(info, src, shift, X, Y2, check_rows, seed, times)
        return (X[:, 0] if vec else X), info
    t = time.perf_counter()
    X, it, hist = pcg(lambda V: op.matmat(V) + shift * V, lambda R: F.solve(R, n_threads=nt),
                      Y2, tol, max_iter)
    times["iterations"] = time.perf_counter() - t
    t = time.perf_counter()
    R = Y2 - (op.matmat(X) + shift * X)           # the true residual, not CG's recurrence
    den = np.linalg.norm(Y2, axis=0)
    den[den == 0] = 1.0
    info["residual"] = float(np.max(np.linalg.norm(R, axis=0) / den))
    times["check"] = time.perf_counter() - t
    info.update(iterations=it, history=hist, converged=bool(info["residual"] <= 10 * tol),
                operator=op.how)
    if hist[-1] > tol:
        info["converged"] = False
        warnings.warn(f"solve: CG stopped after max_iter = {max_iter} iterations at a "
                      f"relative residual {hist[-1]:.3g} > tol = {tol:.3g}: raise "
                      f"max_iter, or lower precond_tol (now {c:g}) for a better "
                      f"preconditioner.", RuntimeWarning, stacklevel=2)
    return (X[:, 0] if vec else X), info


def _residual(info, src, shift, X, Y, check_rows, seed, times):
    """The direct methods' residual: exact where products are cheap (an array, a
    matmat), else on ``check_rows`` exact rows of K (0: not measured)."""
    t = time.perf_counter()
    if isinstance(src, DenseSource) or callable(getattr(src, "matmat", None)):
        K = src.A if isinstance(src, DenseSource) else None
        KX = K @ X if K is not None else np.asarray(src.matmat(X)).reshape(X.shape)
        den = np.linalg.norm(Y, axis=0)
        den[den == 0] = 1.0
        info["residual"] = float(np.max(np.linalg.norm(Y - KX - shift * X, axis=0) / den))
    elif check_rows:
        n = src.n
        rows = np.random.default_rng(seed).choice(n, min(n, check_rows), replace=False)
        info["residual"] = residual_on_rows(src, shift, X, Y, np.sort(rows))
        info["residual_rows"] = int(rows.size)
    times["check"] = time.perf_counter() - t
