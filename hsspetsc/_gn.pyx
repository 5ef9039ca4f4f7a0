# cython: language_level=3
"""Gauss-Newton Hessian entries from per-sample factors (private).

H[a, b] = scale * sum_i Xt[la][qa, i] Xt[lb][qb, i] Gam[la, lb][pa, pb, i]

Xt[l]: (in_l + 1, n) activations entering layer l (last row ones: the bias),
Gam[l, l'] (l <= l'): (out_l, out_l', n) per-sample inner products
<s^l_{i,p}, s^l'_{i,p'}> of the output sensitivities (times G_i^{1/2}), computed once,
so an entry costs O(n) whatever the output width. When ``diag_last`` is set the
last-last block is diagonal in (p, p') and stored as (d, n).
Pair blocks are found through ``goff[la * L + lb]`` (la <= lb). All buffers flat.
``damping`` is added where the row and column index agree.
"""
from libc.stdint cimport int64_t

from ._entries cimport BlockEvaluator


cdef inline double _dot3(const double* x, const double* y, const double* g,
                         Py_ssize_t n) noexcept nogil:
    """sum_i x[i] y[i] g[i], four partial sums (a fixed order: same result on any
    thread; the compiler may pair them into SIMD lanes)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t i, n4 = n - n % 4
    for i in range(0, n4, 4):
        s0 = s0 + x[i] * y[i] * g[i]
        s1 = s1 + x[i + 1] * y[i + 1] * g[i + 1]
        s2 = s2 + x[i + 2] * y[i + 2] * g[i + 2]
        s3 = s3 + x[i + 3] * y[i + 3] * g[i + 3]
    for i in range(n4, n):
        s0 = s0 + x[i] * y[i] * g[i]
    return (s0 + s1) + (s2 + s3)


cdef class GNEvaluator(BlockEvaluator):
    """Entries of the Gauss-Newton matrix (see the module docstring)."""
    cdef const int64_t[::1] layer, pidx, qidx, xoff, goff, outs
    cdef const double[::1] Xbuf, Gbuf
    cdef int64_t n, n_layers
    cdef bint diag_last
    cdef double scale, damping

    def __init__(self, const int64_t[::1] layer, const int64_t[::1] pidx,
                 const int64_t[::1] qidx, const double[::1] Xbuf, const int64_t[::1] xoff,
                 const double[::1] Gbuf, const int64_t[::1] goff, const int64_t[::1] outs,
                 int64_t n, int64_t n_layers, bint diag_last, double scale, double damping):
        self.layer = layer
        self.pidx = pidx
        self.qidx = qidx
        self.Xbuf = Xbuf
        self.xoff = xoff
        self.Gbuf = Gbuf
        self.goff = goff
        self.outs = outs
        self.n = n
        self.n_layers = n_layers
        self.diag_last = diag_last
        self.scale = scale
        self.damping = damping

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t r, c
        cdef int64_t a, b, la, lb, pa, pb, qa, qb, t, L = self.n_layers, last = L - 1
        cdef int64_t n = self.n
        cdef const double* xa
        cdef const double* xb
        cdef const double* g
        cdef double v
        for r in range(ni):
            a = I[r]
            for c in range(nj):
                b = J[c]
                la = self.layer[a]
                lb = self.layer[b]
                pa = self.pidx[a]
                pb = self.pidx[b]
                qa = self.qidx[a]
                qb = self.qidx[b]
                if la > lb:      # symmetric: use the stored (lb, la) block
                    t = la
                    la = lb
                    lb = t
                    t = pa
                    pa = pb
                    pb = t
                    t = qa
                    qa = qb
                    qb = t
                xa = &self.Xbuf[self.xoff[la] + qa * n]
                xb = &self.Xbuf[self.xoff[lb] + qb * n]
                if self.diag_last and la == last and lb == last:
                    if pa != pb:
                        v = 0.0
                    else:
                        g = &self.Gbuf[self.goff[la * L + lb] + pa * n]
                        v = self.scale * _dot3(xa, xb, g, n)
                else:
                    g = &self.Gbuf[self.goff[la * L + lb] + (pa * self.outs[lb] + pb) * n]
                    v = self.scale * _dot3(xa, xb, g, n)
                if a == b:
                    v = v + self.damping
                out[r * ld + c] = v
