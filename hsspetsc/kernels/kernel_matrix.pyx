# cython: language_level=3
"""Entry kernels for point-based sources (private).

Kernels take raw arrays and check nothing; callers validate in Python. Arguments
are labelled IN / OUT. Blocks are evaluated through :class:`KernelEvaluator`
(a nogil ``fill``, run in parallel by ``entries.fill_blocks``).

Points of GEMM_MIN_DIM or more coordinates (images, embeddings) are evaluated a tile
at a time by one GEMM: r^2 = |x|^2 + |y|^2 - 2 x.y, the inner products X_I X_J^T
from BLAS (about ten times the speed of the pairwise loop at d = 784). Where that
cancels (r^2 below 1e-8 (|x|^2 + |y|^2): near-duplicate points) the pair is
recomputed by the exact difference loop, so no entry loses more than a few ulps
of r^2. The tile shapes come from the block shapes only (``util.blocks.fill_tasks``),
so the values do not depend on the thread count.
"""
import numpy as np
from cython.parallel cimport prange
from libc.math cimport exp, sqrt, pow, INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from .blas cimport dgemm
from .entries cimport BlockEvaluator

GEMM_MIN_DIM = 16       # points with this many coordinates or more: tiles by GEMM

# Kernel codes, shared with hsspetsc/sources/_kernel.py (KERNEL_CODES).
cdef enum:
    GAUSSIAN = 0
    LAPLACE = 1
    MATERN32 = 2
    IMQ = 3
    POLYNOMIAL = 4
    INVPOWER = 5        # r^(-p), 0 at r = 0
    MULTIQUADRIC = 6    # sqrt(h + r^2)
    SQDIST = 7          # r^2 (the geometric metric)


cdef inline double _kval(int kind, double r2, double dot, double h, double p) noexcept nogil:
    cdef double r
    if kind == GAUSSIAN:
        return exp(-0.5 * r2 / (h * h))
    elif kind == LAPLACE:
        return exp(-sqrt(r2) / h)
    elif kind == MATERN32:
        r = sqrt(3.0 * r2) / h
        return (1.0 + r) * exp(-r)
    elif kind == IMQ:
        return 1.0 / sqrt(r2 + h * h)
    elif kind == POLYNOMIAL:
        return (dot + h) * (dot + h)
    elif kind == INVPOWER:
        if r2 == 0.0:
            return 0.0
        return pow(r2, -0.5 * p)
    elif kind == MULTIQUADRIC:
        return sqrt(h + r2)
    else:  # SQDIST
        return r2


cdef inline double _pair(const double* x, const double* y, Py_ssize_t d, int kind,
                         double h, double p) noexcept nogil:
    cdef Py_ssize_t t
    cdef double r2 = 0.0, dot = 0.0, diff
    for t in range(d):
        diff = x[t] - y[t]
        r2 = r2 + diff * diff
        dot = dot + x[t] * y[t]
    return _kval(kind, r2, dot, h, p)


cdef class KernelEvaluator(BlockEvaluator):
    """Entries scale * k(X[i], X[j]); where i == j, diag[i] instead when a diagonal
    is given (a shift, or the test suite's diagonal). Kind SQDIST gives the squared
    distances themselves (the geometric metric). ``sq``: the squared norms of the
    points (computed here when not given), used by the GEMM tiles."""
    cdef const double[:, ::1] X
    cdef const double[::1] diag
    cdef const double[::1] sq
    cdef int kind
    cdef double h, p, scale
    cdef bint use_diag, gemm

    def __init__(self, const double[:, ::1] X, int kind, double h, double p, double scale,
                 const double[::1] diag, sq=None):
        self.X = X
        self.kind = kind
        self.h = h
        self.p = p
        self.scale = scale
        self.diag = diag
        self.use_diag = diag.shape[0] > 0
        self.gemm = X.shape[1] >= GEMM_MIN_DIM
        if sq is None:
            sq = _squared_norms(X) if self.gemm else np.zeros(1)
        self.sq = sq

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t a, b, d = self.X.shape[1]
        cdef const double* x
        if self.gemm and ni >= 4 and nj >= 4:
            if self._fill_gemm(I, ni, J, nj, out, ld) == 0:
                return
        for a in range(ni):
            x = &self.X[I[a], 0]
            for b in range(nj):
                if self.use_diag and I[a] == J[b]:
                    out[a * ld + b] = self.diag[I[a]]
                else:
                    out[a * ld + b] = self.scale * _pair(x, &self.X[J[b], 0], d, self.kind,
                                                         self.h, self.p)

    cdef int _fill_gemm(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                        Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        """The tile through one GEMM of the gathered points (see the module
        docstring). Returns -1 (nothing written) when the buffers cannot be had."""
        cdef Py_ssize_t a, b, d = self.X.shape[1]
        cdef int m = <int>nj, n = <int>ni, k = <int>d, ldd = <int>d, ldc = <int>ld
        cdef double one = 1.0, zero = 0.0, r2, dot, si, sj
        cdef char T = b'T', N = b'N'
        cdef double* XI = <double*>malloc(<size_t>(ni * d + 1) * sizeof(double))
        cdef double* XJ = <double*>malloc(<size_t>(nj * d + 1) * sizeof(double))
        if XI == NULL or XJ == NULL:
            free(XI)
            free(XJ)
            return -1
        for a in range(ni):
            memcpy(&XI[a * d], &self.X[I[a], 0], d * sizeof(double))
        for b in range(nj):
            memcpy(&XJ[b * d], &self.X[J[b], 0], d * sizeof(double))
        # out (ni x nj, row-major, ld) = XI XJ^T, i.e. column-major nj x ni = XJ XI^T
        dgemm(&T, &N, &m, &n, &k, &one, XJ, &ldd, XI, &ldd, &zero, out, &ldc)
        free(XI)
        free(XJ)
        for a in range(ni):
            si = self.sq[I[a]]
            for b in range(nj):
                if self.use_diag and I[a] == J[b]:
                    out[a * ld + b] = self.diag[I[a]]
                    continue
                sj = self.sq[J[b]]
                dot = out[a * ld + b]
                r2 = si + sj - 2.0 * dot
                if r2 < 1e-8 * (si + sj):       # cancellation: the exact loop
                    out[a * ld + b] = self.scale * _pair(&self.X[I[a], 0], &self.X[J[b], 0],
                                                         d, self.kind, self.h, self.p)
                else:
                    out[a * ld + b] = self.scale * _kval(self.kind, r2, dot, self.h, self.p)
        return 0


def _squared_norms(const double[:, ::1] X):
    """|x_i|^2 of every point, in the order of the exact loop."""
    cdef Py_ssize_t i, t, n = X.shape[0], d = X.shape[1]
    cdef double s
    res = np.empty(max(n, 1))
    cdef double[::1] r = res
    for i in range(n):
        s = 0.0
        for t in range(d):
            s = s + X[i, t] * X[i, t]
        r[i] = s
    return res


def kernel_offdiag_rowsum(const double[:, ::1] X,   # IN  points, n x d
                          int kind, double h, double p,
                          double[::1] out,          # OUT row sums without the diagonal
                          int n_threads):
    """out[i] = sum_{j != i} k(X[i], X[j]); O(n^2 d), one pass."""
    cdef Py_ssize_t i, j, n = X.shape[0], d = X.shape[1]
    cdef double s
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        s = 0.0
        for j in range(n):
            if j != i:
                s = s + _pair(&X[i, 0], &X[j, 0], d, kind, h, p)
        out[i] = s


def kernel_from_gram_lower(double[:, ::1] G,            # IN/OUT X X^T (lower) -> K
                           const double[:, ::1] X,      # IN  points, n x d
                           const double[::1] sq,        # IN  |x_i|^2
                           int kind, double h, double p, double scale,
                           const double[::1] diag,      # IN  K_ii
                           int n_threads):
    """The whole symmetric K in place from the inner products in the lower triangle
    of G (with the diagonal): K_ij = scale k(r^2 = |x_i|^2 + |x_j|^2 - 2 G_ij), the
    exact loop where that cancels (as in the GEMM tiles), K_ii = diag[i]; then the
    upper triangle mirrored by 64 x 64 blocks. The values do not depend on the
    thread count (each entry is computed by one thread from its own inputs)."""
    cdef Py_ssize_t n = G.shape[0], d = X.shape[1]
    cdef Py_ssize_t a, b, bi, bj, a1, b1, nb = (n + 63) // 64
    cdef double si, sj, r2, dot
    for a in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=16):
        si = sq[a]
        for b in range(a):
            sj = sq[b]
            dot = G[a, b]
            r2 = si + sj - 2.0 * dot
            if r2 < 1e-8 * (si + sj):
                G[a, b] = scale * _pair(&X[a, 0], &X[b, 0], d, kind, h, p)
            else:
                G[a, b] = scale * _kval(kind, r2, dot, h, p)
        G[a, a] = diag[a]
    for bi in prange(nb, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a1 = min(n, (bi + 1) * 64)
        for bj in range(bi + 1):
            b1 = min(n, (bj + 1) * 64)
            for a in range(bi * 64, a1):
                for b in range(bj * 64, min(b1, a)):
                    G[b, a] = G[a, b]
