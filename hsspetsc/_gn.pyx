# cython: language_level=3
"""Gauss-Newton Hessian entries from per-sample factors (private).

H[a, b] = scale * sum_i Xt[la][qa, i] Xt[lb][qb, i] Gam[la, lb][pa, pb, i]

Xt[l]: (in_l + 1, n) activations entering layer l (last row ones: the bias),
Gam[l, l'] (l <= l'): (out_l, out_l', n) per-sample inner products
<s^l_{i,p}, s^l'_{i,p'}> of the output sensitivities (times G_i^{1/2}), computed once,
so an entry costs O(n) whatever the output width. When ``diag_last`` is set the
last-last block is diagonal in (p, p') and stored as (d, n).
Pair blocks are found through ``goff[la * L + lb]`` (la <= lb). All buffers flat.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t


def gn_entries(const int64_t[::1] I, const int64_t[::1] J,       # IN parameter indices
               const int64_t[::1] layer, const int64_t[::1] pidx, const int64_t[::1] qidx,
               const double[::1] Xbuf, const int64_t[::1] xoff,
               const double[::1] Gbuf, const int64_t[::1] goff, const int64_t[::1] outs,
               int64_t n, int64_t n_layers, bint diag_last, double scale,
               double[:, ::1] out,                                # OUT len(I) x len(J)
               int n_threads):
    cdef Py_ssize_t r, c, i, ni = I.shape[0], nj = J.shape[0]
    cdef int64_t a, b, la, lb, pa, pb, qa, qb, t, last = n_layers - 1
    cdef double acc
    cdef const double* xa
    cdef const double* xb
    cdef const double* g
    for r in prange(ni, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = I[r]
        for c in range(nj):
            b = J[c]
            la = layer[a]
            lb = layer[b]
            pa = pidx[a]
            pb = pidx[b]
            qa = qidx[a]
            qb = qidx[b]
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
            xa = &Xbuf[xoff[la] + qa * n]
            xb = &Xbuf[xoff[lb] + qb * n]
            if diag_last and la == last and lb == last:
                if pa != pb:
                    out[r, c] = 0.0
                    continue
                g = &Gbuf[goff[la * n_layers + lb] + pa * n]
            else:
                g = &Gbuf[goff[la * n_layers + lb] + (pa * outs[lb] + pb) * n]
            acc = 0.0
            for i in range(n):
                acc = acc + xa[i] * xb[i] * g[i]
            out[r, c] = scale * acc
