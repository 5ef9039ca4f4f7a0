# cython: language_level=3
"""Entry kernels for point-based sources (private).

Kernels take raw arrays and check nothing; callers validate in Python. Arguments
are labelled IN / OUT. Every loop runs in ``prange`` over output rows.
"""
from cython.parallel cimport prange
from libc.math cimport exp, sqrt, pow, INFINITY
from libc.stdint cimport int64_t

# Kernel codes, shared with hsspetsc/sources/_kernel.py (KERNEL_CODES).
cdef enum:
    GAUSSIAN = 0
    LAPLACE = 1
    MATERN32 = 2
    IMQ = 3
    POLYNOMIAL = 4
    INVPOWER = 5        # r^(-p), 0 at r = 0
    MULTIQUADRIC = 6    # sqrt(h + r^2)


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
    else:  # MULTIQUADRIC
        return sqrt(h + r2)


cdef inline double _pair(const double* x, const double* y, Py_ssize_t d, int kind,
                         double h, double p) noexcept nogil:
    cdef Py_ssize_t t
    cdef double r2 = 0.0, dot = 0.0, diff
    for t in range(d):
        diff = x[t] - y[t]
        r2 = r2 + diff * diff
        dot = dot + x[t] * y[t]
    return _kval(kind, r2, dot, h, p)


def kernel_block(const double[:, ::1] X,      # IN  points, n x d
                 const int64_t[::1] I,        # IN  row indices
                 const int64_t[::1] J,        # IN  column indices
                 int kind, double h, double p, double scale,
                 const double[::1] diag,      # IN  (n,) diagonal, or empty: none
                 double[:, ::1] out,          # OUT len(I) x len(J)
                 int n_threads):
    """out[a, b] = scale * k(X[I[a]], X[J[b]]), except diag[I[a]] where I[a] == J[b]
    (when ``diag`` is given: a shift or the test suite's diagonal)."""
    cdef Py_ssize_t a, b, ni = I.shape[0], nj = J.shape[0], d = X.shape[1]
    cdef bint use_diag = diag.shape[0] > 0
    if ni == 0 or nj == 0:
        return
    for a in prange(ni, nogil=True, num_threads=n_threads, schedule="static"):
        for b in range(nj):
            if use_diag and I[a] == J[b]:
                out[a, b] = diag[I[a]]
            else:
                out[a, b] = scale * _pair(&X[I[a], 0], &X[J[b], 0], d, kind, h, p)


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
