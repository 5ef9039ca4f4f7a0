# cython: language_level=3
"""Entry kernels for point-based sources (private).

Kernels take raw arrays and check nothing; callers validate in Python. Arguments
are labelled IN / OUT. Blocks are evaluated through :class:`KernelEvaluator`
(a nogil ``fill``, run in parallel by ``_entries.fill_blocks``).
"""
from cython.parallel cimport prange
from libc.math cimport exp, sqrt, pow, INFINITY
from libc.stdint cimport int64_t

from ._entries cimport BlockEvaluator

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
    distances themselves (the geometric metric)."""
    cdef const double[:, ::1] X
    cdef const double[::1] diag
    cdef int kind
    cdef double h, p, scale
    cdef bint use_diag

    def __init__(self, const double[:, ::1] X, int kind, double h, double p, double scale,
                 const double[::1] diag):
        self.X = X
        self.kind = kind
        self.h = h
        self.p = p
        self.scale = scale
        self.diag = diag
        self.use_diag = diag.shape[0] > 0

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t a, b, d = self.X.shape[1]
        cdef const double* x
        for a in range(ni):
            x = &self.X[I[a], 0]
            for b in range(nj):
                if self.use_diag and I[a] == J[b]:
                    out[a * ld + b] = self.diag[I[a]]
                else:
                    out[a * ld + b] = self.scale * _pair(x, &self.X[J[b], 0], d, self.kind,
                                                         self.h, self.p)


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
