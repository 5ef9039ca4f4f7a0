# cython: language_level=3
"""Gauss-Newton Hessian entries from per-sample factors (private).

H[a, b] = scale * sum_i X[la][i, qa] X[lb][i, qb] <S[la][i, pa, :], S[lb][i, pb, :]>

X[l]: (n, in_l + 1) activations entering layer l, last column ones (bias);
S[l]: (n, out_l, d) output sensitivities times a square root of G_i. When
``diag_last`` is set the last layer's S is diagonal and stored as (n, d):
S[L][i, p, :] = sL[i, p] e_p. All buffers flat, offsets per layer.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t


cdef inline double _dot(const double* x, const double* y, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t k
    cdef double s0 = 0.0, s1 = 0.0
    k = 0
    while k + 1 < d:
        s0 = s0 + x[k] * y[k]
        s1 = s1 + x[k + 1] * y[k + 1]
        k = k + 2
    if k < d:
        s0 = s0 + x[k] * y[k]
    return s0 + s1


def gn_entries(const int64_t[::1] I, const int64_t[::1] J,       # IN parameter indices
               const int64_t[::1] layer, const int64_t[::1] pidx, const int64_t[::1] qidx,
               const double[::1] Xbuf, const int64_t[::1] xoff, const int64_t[::1] xcols,
               const double[::1] Sbuf, const int64_t[::1] soff, const int64_t[::1] souts,
               int64_t n, int64_t d, int64_t last, bint diag_last, double scale,
               double[:, ::1] out,                                # OUT len(I) x len(J)
               int n_threads):
    cdef Py_ssize_t r, c, i, ni = I.shape[0], nj = J.shape[0]
    cdef int64_t a, b, la, lb, pa, pb, qa, qb
    cdef double acc, w
    cdef const double* xa
    cdef const double* xb
    cdef const double* sa
    cdef const double* sb
    for r in prange(ni, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = I[r]
        la = layer[a]
        pa = pidx[a]
        qa = qidx[a]
        for c in range(nj):
            b = J[c]
            lb = layer[b]
            pb = pidx[b]
            qb = qidx[b]
            acc = 0.0
            for i in range(n):
                w = Xbuf[xoff[la] + i * xcols[la] + qa] * Xbuf[xoff[lb] + i * xcols[lb] + qb]
                if w == 0.0:
                    continue
                if diag_last and la == last and lb == last:
                    if pa == pb:
                        acc = acc + w * Sbuf[soff[la] + i * d + pa] * Sbuf[soff[lb] + i * d + pb]
                elif diag_last and la == last:
                    acc = acc + w * Sbuf[soff[la] + i * d + pa] * Sbuf[
                        soff[lb] + (i * souts[lb] + pb) * d + pa]
                elif diag_last and lb == last:
                    acc = acc + w * Sbuf[soff[lb] + i * d + pb] * Sbuf[
                        soff[la] + (i * souts[la] + pa) * d + pb]
                else:
                    acc = acc + w * _dot(&Sbuf[soff[la] + (i * souts[la] + pa) * d],
                                         &Sbuf[soff[lb] + (i * souts[lb] + pb) * d], d)
            out[r, c] = scale * acc
