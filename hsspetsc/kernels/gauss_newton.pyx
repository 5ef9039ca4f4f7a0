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
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from .blas cimport dgemm
from .entries cimport BlockEvaluator
from .sort cimport KeyIdx, sort_keyidx


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

    cdef inline const double* _g(self, int64_t la, int64_t pa, int64_t lb,
                                 int64_t pb) noexcept nogil:
        """The per-sample factor of the pair (la <= lb), or NULL when the entry is a
        structural zero (last layer with itself, different outputs, MSE)."""
        cdef int64_t L = self.n_layers
        if self.diag_last and la == L - 1 and lb == L - 1:
            if pa != pb:
                return NULL
            return &self.Gbuf[self.goff[la * L + lb] + pa * self.n]
        return &self.Gbuf[self.goff[la * L + lb] + (pa * self.outs[lb] + pb) * self.n]

    cdef void _fill_direct(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                           Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        """One dot product of n samples per entry."""
        cdef Py_ssize_t r, c, n = self.n
        cdef int64_t a, b, la, lb
        cdef const double* g
        cdef double v
        for r in range(ni):
            a = I[r]
            la = self.layer[a]
            for c in range(nj):
                b = J[c]
                lb = self.layer[b]
                if la <= lb:
                    g = self._g(la, self.pidx[a], lb, self.pidx[b])
                else:
                    g = self._g(lb, self.pidx[b], la, self.pidx[a])
                if g == NULL:
                    v = 0.0
                else:
                    v = self.scale * _dot3(&self.Xbuf[self.xoff[la] + self.qidx[a] * n],
                                           &self.Xbuf[self.xoff[lb] + self.qidx[b] * n], g, n)
                if a == b:
                    v = v + self.damping
                out[r * ld + c] = v

    cdef void _gather_x(self, const int64_t* I, const KeyIdx* order, Py_ssize_t ni,
                        double* out) noexcept nogil:
        """out[r] = the activation vector x_q (n samples) of parameter I[order[r].idx]."""
        cdef Py_ssize_t r, n = self.n
        cdef int64_t a
        for r in range(ni):
            a = I[order[r].idx]
            memcpy(&out[r * n], &self.Xbuf[self.xoff[self.layer[a]] + self.qidx[a] * n],
                   n * sizeof(double))

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        """Rows and columns are grouped by (layer, unit): within a pair of groups
        H[a, b] = sum_i x_qa,i x_qb,i g_i for one g, i.e. (X_a o g) X_b^T, one GEMM
        (a leaf of parameters of one unit is one group). Small groups: dot loops."""
        cdef Py_ssize_t r, c, i, a0, a1, b0, b1, n = self.n
        cdef int ga, gb, nn = <int>self.n
        cdef int64_t la, lb, pa, pb
        cdef double one = 1.0, zero = 0.0, v
        cdef char T = b'T', N = b'N'
        cdef const double* g
        if ni <= 8 or nj <= 8:        # thin block: no groups worth forming
            self._fill_direct(I, ni, J, nj, out, ld)
            return
        cdef KeyIdx* rk = <KeyIdx*>malloc((ni + 1) * sizeof(KeyIdx))
        cdef KeyIdx* ck = <KeyIdx*>malloc((nj + 1) * sizeof(KeyIdx))
        cdef double* XI = <double*>malloc((ni * n + 1) * sizeof(double))
        cdef double* XJ = <double*>malloc((nj * n + 1) * sizeof(double))
        cdef double* Xg = <double*>malloc((ni * n + 1) * sizeof(double))
        cdef double* C = <double*>malloc((ni * nj + 1) * sizeof(double))
        for r in range(ni):
            rk[r].key = <double>self.layer[I[r]] * 4294967296.0 + <double>self.pidx[I[r]]
            rk[r].idx = r
        for c in range(nj):
            ck[c].key = <double>self.layer[J[c]] * 4294967296.0 + <double>self.pidx[J[c]]
            ck[c].idx = c
        sort_keyidx(rk, ni)
        sort_keyidx(ck, nj)
        self._gather_x(I, rk, ni, XI)        # x vectors in group order
        self._gather_x(J, ck, nj, XJ)
        a0 = 0
        while a0 < ni:
            a1 = a0 + 1
            while a1 < ni and rk[a1].key == rk[a0].key:
                a1 = a1 + 1
            la = self.layer[I[rk[a0].idx]]
            pa = self.pidx[I[rk[a0].idx]]
            b0 = 0
            while b0 < nj:
                b1 = b0 + 1
                while b1 < nj and ck[b1].key == ck[b0].key:
                    b1 = b1 + 1
                lb = self.layer[J[ck[b0].idx]]
                pb = self.pidx[J[ck[b0].idx]]
                g = self._g(la, pa, lb, pb) if la <= lb else self._g(lb, pb, la, pa)
                ga = <int>(a1 - a0)
                gb = <int>(b1 - b0)
                if g == NULL:
                    for r in range(a0, a1):
                        for c in range(b0, b1):
                            out[rk[r].idx * ld + ck[c].idx] = 0.0
                elif ga < 4 or gb < 4:
                    for r in range(a0, a1):
                        for c in range(b0, b1):
                            out[rk[r].idx * ld + ck[c].idx] = self.scale * _dot3(
                                &XI[r * n], &XJ[c * n], g, n)
                else:
                    for r in range(a0, a1):
                        for i in range(n):
                            Xg[(r - a0) * n + i] = XI[r * n + i] * g[i]
                    # C (gb x ga, col-major) = XJ_group (n x gb)^T Xg (n x ga)
                    dgemm(&T, &N, &gb, &ga, &nn, &one, &XJ[b0 * n], &nn, Xg, &nn, &zero,
                          C, &gb)
                    for r in range(a0, a1):
                        for c in range(b0, b1):
                            out[rk[r].idx * ld + ck[c].idx] = self.scale * C[
                                (r - a0) * gb + (c - b0)]
                b0 = b1
            a0 = a1
        if self.damping != 0.0:
            for r in range(ni):
                for c in range(nj):
                    if I[r] == J[c]:
                        out[r * ld + c] = out[r * ld + c] + self.damping
        free(rk)
        free(ck)
        free(XI)
        free(XJ)
        free(Xg)
        free(C)


cdef enum:
    PAIR_CHUNK = 512      # (image, projection) pairs gathered at a time (about)


cdef class ProjectedGNEvaluator(BlockEvaluator):
    """Entries of a Gauss-Newton matrix whose per-image curvature is r projections:
    H[a, b] = scale * sum_k u_a[k] u_b[k] over the K = n r pairs k = (i, c), with
    u_a[i r + c] = Xt[la][qa, i] * S[la][pa, i r + c].

    Xbuf: per layer (in_l + 1, n) activations at ``xoff`` (as GNEvaluator);
    Sbuf: per layer (out_l, n r) projected sensitivities at ``soff``.
    A block gathers the rows u of its rows and columns, PAIR_CHUNK pairs at a
    time, and multiplies them in one GEMM per chunk (a fixed order of chunks:
    the same bits on any thread count). Thin blocks: one dot loop per entry.
    """
    cdef const int64_t[::1] layer, pidx, qidx, xoff, soff, outs
    cdef const double[::1] Xbuf, Sbuf
    cdef int64_t n, r
    cdef double scale, damping

    def __init__(self, const int64_t[::1] layer, const int64_t[::1] pidx,
                 const int64_t[::1] qidx, const double[::1] Xbuf, const int64_t[::1] xoff,
                 const double[::1] Sbuf, const int64_t[::1] soff, const int64_t[::1] outs,
                 int64_t n, int64_t r, double scale, double damping):
        self.layer = layer
        self.pidx = pidx
        self.qidx = qidx
        self.Xbuf = Xbuf
        self.xoff = xoff
        self.Sbuf = Sbuf
        self.soff = soff
        self.outs = outs
        self.n = n
        self.r = r
        self.scale = scale
        self.damping = damping

    cdef inline const double* _x(self, int64_t a) noexcept nogil:
        return &self.Xbuf[self.xoff[self.layer[a]] + self.qidx[a] * self.n]

    cdef inline const double* _s(self, int64_t a) noexcept nogil:
        return &self.Sbuf[self.soff[self.layer[a]] + self.pidx[a] * self.n * self.r]

    cdef void _gather(self, const int64_t* I, Py_ssize_t ni, Py_ssize_t i0,
                      Py_ssize_t i1, double* out) noexcept nogil:
        """out[t, :] = u_{I[t]} over the pairs of images i0 <= i < i1 (row-major,
        (i1 - i0) r per row)."""
        cdef Py_ssize_t t, i, c, r = self.r, kc = (i1 - i0) * self.r
        cdef const double* x
        cdef const double* s
        cdef double xi
        for t in range(ni):
            x = self._x(I[t])
            s = self._s(I[t])
            for i in range(i0, i1):
                xi = x[i]
                for c in range(r):
                    out[t * kc + (i - i0) * r + c] = xi * s[i * r + c]

    cdef void _fill_direct(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                           Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t t, u, i, c, n = self.n, r = self.r
        cdef const double* xa
        cdef const double* xb
        cdef const double* sa
        cdef const double* sb
        cdef double v, w
        for t in range(ni):
            xa = self._x(I[t])
            sa = self._s(I[t])
            for u in range(nj):
                xb = self._x(J[u])
                sb = self._s(J[u])
                v = 0.0
                for i in range(n):
                    w = 0.0
                    for c in range(r):
                        w = w + sa[i * r + c] * sb[i * r + c]
                    v = v + xa[i] * xb[i] * w
                v = self.scale * v
                if I[t] == J[u]:
                    v = v + self.damping
                out[t * ld + u] = v

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t t, u, i0, i1, step = max(<Py_ssize_t>1, PAIR_CHUNK // self.r)
        cdef int kc, mi = <int>ni, mj = <int>nj
        cdef double one = 1.0, zero = 0.0, beta
        cdef char T = b'T', N = b'N'
        if ni <= 4 or nj <= 4:
            self._fill_direct(I, ni, J, nj, out, ld)
            return
        cdef double* UI = <double*>malloc((ni * step * self.r + 1) * sizeof(double))
        cdef double* UJ = <double*>malloc((nj * step * self.r + 1) * sizeof(double))
        cdef double* C = <double*>malloc((ni * nj + 1) * sizeof(double))
        i0 = 0
        while i0 < self.n:
            i1 = min(i0 + step, <Py_ssize_t>self.n)
            kc = <int>((i1 - i0) * self.r)
            self._gather(I, ni, i0, i1, UI)
            self._gather(J, nj, i0, i1, UJ)
            beta = zero if i0 == 0 else one
            # C (nj x ni, col-major) += UJ (kc x nj, col-major)^T UI (kc x ni)
            dgemm(&T, &N, &mj, &mi, &kc, &one, UJ, &kc, UI, &kc, &beta, C, &mj)
            i0 = i1
        for t in range(ni):
            for u in range(nj):
                out[t * ld + u] = self.scale * C[t * nj + u]
                if I[t] == J[u]:
                    out[t * ld + u] = out[t * ld + u] + self.damping
        free(UI)
        free(UJ)
        free(C)
