# cython: language_level=3
"""ULV-type factorization of shift*I + H~ (HSS part) and its solve (private).

Everything here is column-major (Fortran order). Per node a: active size c[a]
(leaf: its indices; inner: the children's skeletons), skeleton positions
sk_pos[sk_ptr[a]:sk_ptr[a+1]] (r[a] of them, pivot order) and redundant positions
rd_pos[rd_ptr[a]:rd_ptr[a+1]] (red[a] = c[a] - r[a]); T (r x red) are the ID
coefficients, K(out, red) ~= K(out, skel) T.

Factor (per node, A the active block):
    M    = A_rs - T^T A_ss                       (stored in G)
    A'rr = A_rr - (A_rs T)^T - M T  = L L^T       (stored in L)
    G    = L^-1 M
    Z    = A_ss - G^T G                           (handed to the parent)
Parent active block: [[Z_l, B], [B^T, Z_r]] with B = K(skel l, skel r).

The per-node arrays travel as two typed objects: :class:`Layout` (what does not
depend on the shift: sizes, positions, T, the sibling couplings, the offsets of the
factors) and :class:`Factors` (L, G and the Schur complements Z of one shift).
Kernels check nothing; a failed Cholesky leaves its LAPACK info in info[a].
BLAS/LAPACK run inside prange: the caller holds BLAS to one thread. A product or
triangular substitution with at most SMALL_RHS columns on the right (every node of a
solve with one or two right-hand sides, the preconditioner's case; in the
factorization only a node with one or two skeleton or redundant columns) runs as
loops instead: there a BLAS call costs more than the arithmetic of a small block.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.math cimport log
from .blas cimport dgemm, dpotrf, dtrsm


cdef class Layout:
    """The shift-independent arrays of a factorization, per node a (int64 offsets,
    float64 data, contiguous): active size c, skeleton rank r, redundant count red;
    skeleton and redundant positions (sk_ptr/sk_pos, rd_ptr/rd_pos); the ID
    coefficients T (T_ptr/T_data, column-major r x red); the offset of each leaf's
    diagonal block in the near data (diag_off); the sibling couplings B
    (B_ptr/B_data, per parent, column-major); and where each node's L, G and Z
    start (L_ptr, G_ptr, Z_ptr)."""
    cdef const int64_t[::1] c, r, red, sk_ptr, sk_pos, rd_ptr, rd_pos, T_ptr
    cdef const int64_t[::1] diag_off, B_ptr, L_ptr, G_ptr, Z_ptr
    cdef const double[::1] T_data, B_data

    def __init__(self, c, r, red, sk_ptr, sk_pos, rd_ptr, rd_pos, T_ptr, T_data,
                 diag_off, B_ptr, B_data, L_ptr, G_ptr, Z_ptr):
        self.c, self.r, self.red = c, r, red
        self.sk_ptr, self.sk_pos, self.rd_ptr, self.rd_pos = sk_ptr, sk_pos, rd_ptr, rd_pos
        self.T_ptr, self.T_data = T_ptr, T_data
        self.diag_off, self.B_ptr, self.B_data = diag_off, B_ptr, B_data
        self.L_ptr, self.G_ptr, self.Z_ptr = L_ptr, G_ptr, Z_ptr


cdef class Factors:
    """The factors of one shift, at the offsets of a :class:`Layout`: the Cholesky
    blocks L, the blocks G = L^-1 M and the Schur complements Z handed to the
    parents (float64, contiguous; written by :func:`factor_level`)."""
    cdef double[::1] L_data, G_data, Z_data

    def __init__(self, L_data, G_data, Z_data):
        self.L_data, self.G_data, self.Z_data = L_data, G_data, Z_data


cdef inline double* _ptr(double[::1] x) noexcept nogil:
    """First element of a flat buffer, NULL when it is empty."""
    return &x[0] if x.shape[0] > 0 else NULL


cdef inline const double* _cptr(const double[::1] x) noexcept nogil:
    return &x[0] if x.shape[0] > 0 else NULL


cdef inline const int64_t* _iptr(const int64_t[::1] x) noexcept nogil:
    return &x[0] if x.shape[0] > 0 else NULL


cdef enum:
    # up to this many right-hand sides the small products and substitutions of a
    # node run as plain loops instead of BLAS calls
    SMALL_RHS = 2


cdef inline int _mx(int a) noexcept nogil:
    return a if a > 1 else 1


cdef void _gemm(char ta, char tb, int m, int n, int k, double alpha, const double* A,
                int lda, const double* B, int ldb, double beta, double* C,
                int ldc) noexcept nogil:
    cdef int i, j
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta != 1.0:
            for j in range(n):
                for i in range(m):
                    C[i + <Py_ssize_t>j * ldc] = beta * C[i + <Py_ssize_t>j * ldc] if beta != 0.0 else 0.0
        return
    if n <= SMALL_RHS and tb == b'N':
        _gemm_few(ta == b'T', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    lda = _mx(lda)
    ldb = _mx(ldb)
    ldc = _mx(ldc)
    dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*>A, &lda, <double*>B, &ldb, &beta, C, &ldc)


cdef inline double _dot(const double* a, const double* b, Py_ssize_t n) noexcept nogil:
    """sum a[p] b[p] in four interleaved partial sums (a fixed order: the same bits on
    any thread count), so that the additions need not wait for each other."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t p, n4 = n - n % 4
    for p in range(0, n4, 4):
        s0 = s0 + a[p] * b[p]
        s1 = s1 + a[p + 1] * b[p + 1]
        s2 = s2 + a[p + 2] * b[p + 2]
        s3 = s3 + a[p + 3] * b[p + 3]
    for p in range(n4, n):
        s0 = s0 + a[p] * b[p]
    return (s0 + s1) + (s2 + s3)


cdef void _gemm_few(bint trans, int m, int n, int k, double alpha, const double* A,
                    int lda, const double* B, int ldb, double beta, double* C,
                    int ldc) noexcept nogil:
    """C = alpha op(A) B + beta C by plain loops, for a few columns of B (one solve):
    a BLAS call costs more than the arithmetic of the small blocks of one node."""
    cdef Py_ssize_t i, j, p
    cdef double s, t
    cdef const double* a
    cdef const double* b
    cdef double* c
    for j in range(n):
        b = B + j * <Py_ssize_t>ldb
        c = C + j * <Py_ssize_t>ldc
        if trans:                       # C(:, j) = alpha A^T b + beta C(:, j): dots
            for i in range(m):
                s = _dot(A + i * <Py_ssize_t>lda, b, k)
                c[i] = alpha * s + (beta * c[i] if beta != 0.0 else 0.0)
        else:                           # C(:, j) = alpha A b + beta C(:, j): axpys
            if beta == 0.0:
                for i in range(m):
                    c[i] = 0.0
            elif beta != 1.0:
                for i in range(m):
                    c[i] = beta * c[i]
            for p in range(k):
                a = A + p * <Py_ssize_t>lda
                t = alpha * b[p]
                for i in range(m):
                    c[i] = c[i] + t * a[i]


cdef void _trsm_lower(char trans, int m, int n, const double* L, int ldl, double* B,
                      int ldb) noexcept nogil:
    """B = L^-1 B (trans 'N') or L^-T B (trans 'T'), L lower m x m."""
    cdef char side = b'L'
    cdef char uplo = b'L'
    cdef char diag = b'N'
    cdef double one = 1.0
    cdef Py_ssize_t i, j, q
    cdef double s, t
    cdef double* x
    cdef const double* col
    if m == 0 or n == 0:
        return
    if n <= SMALL_RHS:                  # substitution by loops (see _gemm_few)
        for j in range(n):
            x = B + j * <Py_ssize_t>ldb
            if trans == b'N':
                for i in range(m):
                    col = L + i * <Py_ssize_t>ldl
                    x[i] = x[i] / col[i]
                    t = x[i]
                    for q in range(i + 1, m):
                        x[q] = x[q] - t * col[q]
            else:
                for i in range(m - 1, -1, -1):
                    col = L + i * <Py_ssize_t>ldl
                    s = x[i] - _dot(col + i + 1, x + i + 1, m - i - 1)
                    x[i] = s / col[i]
        return
    ldl = _mx(ldl)
    ldb = _mx(ldb)
    dtrsm(&side, &uplo, &trans, &diag, &m, &n, &one, <double*>L, &ldl, B, &ldb)


cdef int _chol(int n, double* A) noexcept nogil:
    """Lower Cholesky in place (upper part zeroed); returns LAPACK info."""
    cdef char uplo = b'L'
    cdef int info = 0, i, j, lda = _mx(n)
    if n == 0:
        return 0
    dpotrf(&uplo, &n, A, &lda, &info)
    if info == 0:
        for j in range(1, n):
            for i in range(j):
                A[i + <Py_ssize_t>j * n] = 0.0
    return info


cdef void _assemble(int64_t a, bint leaf, int c, double shift, const double* dshift,
                    const double* near_data, const int64_t* diag_off,
                    const int64_t* r, const int64_t* Z_ptr, const double* Z_data,
                    const int64_t* B_ptr, const double* B_data, double* A) noexcept nogil:
    """Active block of node a (c x c, column-major) into A. A leaf's diagonal gets
    ``shift`` plus ``dshift`` (its slice of a per-index diagonal, or NULL)."""
    cdef Py_ssize_t i, j, rl, rr
    cdef const double* D
    cdef const double* Zl
    cdef const double* Zr
    cdef const double* B
    if leaf:
        D = &near_data[diag_off[a]]          # symmetric, any order
        for j in range(c):
            for i in range(c):
                A[i + j * c] = D[i + j * c]
            A[j + j * c] += shift
            if dshift != NULL:
                A[j + j * c] += dshift[j]
        return
    rl = r[2 * a + 1]
    rr = r[2 * a + 2]
    Zl = &Z_data[Z_ptr[2 * a + 1]]
    Zr = &Z_data[Z_ptr[2 * a + 2]]
    B = &B_data[B_ptr[a]]                    # rl x rr, column-major
    for j in range(rl):
        for i in range(rl):
            A[i + j * c] = Zl[i + j * rl]
        for i in range(rr):
            A[rl + i + j * c] = B[j + i * rl]
    for j in range(rr):
        for i in range(rl):
            A[i + (rl + j) * c] = B[i + j * rl]
        for i in range(rr):
            A[rl + i + (rl + j) * c] = Zr[i + j * rr]


def factor_level(const int64_t[::1] nodes, bint leaf, double shift,
                 const double[::1] dshift,        # IN  extra diagonal, tree order (or empty)
                 const int64_t[::1] node_off, const double[::1] near_data,
                 Layout lay, Factors f,           # IN / OUT: L, G, Z (Z also IN: children)
                 const int64_t[::1] work_ptr, double[::1] work,         # WORK, per node of level
                 int64_t[::1] info,                                     # OUT per node
                 int n_threads):
    """Eliminate the redundant indices of every node of one level."""
    cdef const int64_t[::1] c = lay.c, r = lay.r, red = lay.red
    cdef const int64_t[::1] sk_ptr = lay.sk_ptr, sk_pos = lay.sk_pos
    cdef const int64_t[::1] rd_ptr = lay.rd_ptr, rd_pos = lay.rd_pos
    cdef const int64_t[::1] T_ptr = lay.T_ptr, diag_off = lay.diag_off, B_ptr = lay.B_ptr
    cdef const int64_t[::1] L_ptr = lay.L_ptr, G_ptr = lay.G_ptr, Z_ptr = lay.Z_ptr
    cdef const double[::1] T_data = lay.T_data, B_data = lay.B_data
    cdef double[::1] L_data = f.L_data, G_data = f.G_data, Z_data = f.Z_data
    cdef Py_ssize_t q, i, j, nq = nodes.shape[0]
    cdef int64_t a
    cdef int ci, ra, rd
    cdef double* A
    cdef double* X
    cdef double* Lb
    cdef double* Gb
    cdef double* Zb
    cdef const double* T
    cdef const int64_t* skp
    cdef const int64_t* rdp
    cdef const double* nd = _cptr(near_data)
    cdef const double* dsh = _cptr(dshift)
    cdef const double* bd = _cptr(B_data)
    cdef const double* td = _cptr(T_data)
    cdef double* ld = _ptr(L_data)
    cdef double* gd = _ptr(G_data)
    cdef double* zd = _ptr(Z_data)
    cdef const int64_t* skd = _iptr(sk_pos)
    cdef const int64_t* rdd = _iptr(rd_pos)
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = nodes[q]
        ci = <int>c[a]
        ra = <int>r[a]
        rd = <int>red[a]
        A = &work[work_ptr[q]]
        X = &work[work_ptr[q] + <int64_t>ci * ci]
        _assemble(a, leaf, ci, shift, &dsh[node_off[a]] if dsh != NULL else NULL, nd,
                  &diag_off[0], &r[0], &Z_ptr[0], zd, &B_ptr[0], bd, A)
        Lb = &ld[L_ptr[a]] if rd > 0 else NULL
        Gb = &gd[G_ptr[a]] if rd > 0 and ra > 0 else NULL
        Zb = &zd[Z_ptr[a]] if ra > 0 else NULL
        T = &td[T_ptr[a]] if rd > 0 and ra > 0 else NULL
        skp = &skd[sk_ptr[a]]
        rdp = &rdd[rd_ptr[a]]
        for j in range(ra):
            for i in range(ra):
                Zb[i + j * ra] = A[skp[i] + skp[j] * ci]
        if rd == 0:
            info[a] = 0
            continue
        for j in range(rd):
            for i in range(rd):
                Lb[i + j * rd] = A[rdp[i] + rdp[j] * ci]
        for j in range(ra):
            for i in range(rd):
                Gb[i + j * rd] = A[rdp[i] + skp[j] * ci]
        # X = A_rs T ; M = A_rs - T^T A_ss ; A'rr = A_rr - X^T - M T
        _gemm(b'N', b'N', rd, rd, ra, 1.0, Gb, rd, T, ra, 0.0, X, rd)
        _gemm(b'T', b'N', rd, ra, ra, -1.0, T, ra, Zb, ra, 1.0, Gb, rd)
        for j in range(rd):
            for i in range(rd):
                Lb[i + j * rd] = Lb[i + j * rd] - X[j + i * rd]
        _gemm(b'N', b'N', rd, rd, ra, -1.0, Gb, rd, T, ra, 1.0, Lb, rd)
        info[a] = _chol(rd, Lb)
        if info[a] != 0:
            continue
        _trsm_lower(b'N', rd, ra, Lb, rd, Gb, rd)
        _gemm(b'T', b'N', ra, ra, rd, -1.0, Gb, rd, Gb, rd, 1.0, Zb, ra)


def factor_root(bint leaf, double shift, const double[::1] dshift,
                const double[::1] near_data, Layout lay, Factors f,
                double[::1] Lroot):                                     # OUT c0 x c0
    """Cholesky of the root's active block; returns LAPACK info."""
    cdef int c0 = <int>lay.c[0]
    cdef const double* nd = _cptr(near_data)
    cdef const double* zd = _ptr(f.Z_data)
    cdef const double* bd = _cptr(lay.B_data)
    if c0 == 0:
        return 0
    _assemble(0, leaf, c0, shift, _cptr(dshift), nd, &lay.diag_off[0], &lay.r[0],
              &lay.Z_ptr[0], zd, &lay.B_ptr[0], bd, &Lroot[0])
    return _chol(c0, &Lroot[0])


def logdet_sum(Layout lay, Factors f, const int64_t[::1] red, const double[::1] Lroot,
               int c0):
    """Sum of log of the Cholesky diagonals: of the nodes with red[a] > 0 (``red``:
    the layout's, or zero for the nodes another rank counts) and of the root."""
    cdef const double[::1] L_data = f.L_data
    cdef const int64_t[::1] L_ptr = lay.L_ptr
    cdef Py_ssize_t a, i, n = red.shape[0]
    cdef double s = 0.0
    for a in range(n):
        for i in range(red[a]):
            s += log(L_data[L_ptr[a] + i + i * red[a]])
    for i in range(c0):
        s += log(Lroot[i + i * c0])
    return s


cdef void _gather_active(int64_t a, bint leaf, int ci, int k, const double* B,
                         const int64_t* node_off, const int64_t* r, const int64_t* sk_ptr,
                         const double* bh, double* dst) noexcept nogil:
    """dst (ci x k, column-major) = node a's active right-hand side: rows of B
    (row-major N x k, tree order) at a leaf, the children's [bhat_l; bhat_r] above."""
    cdef Py_ssize_t i, t
    cdef int rl
    if leaf:
        for t in range(k):
            for i in range(ci):
                dst[i + t * ci] = B[(node_off[a] + i) * k + t]
        return
    rl = <int>r[2 * a + 1]
    for t in range(k):
        for i in range(rl):
            dst[i + t * ci] = bh[sk_ptr[2 * a + 1] * k + i + t * rl]
        for i in range(ci - rl):
            dst[rl + i + t * ci] = bh[sk_ptr[2 * a + 2] * k + i + t * (ci - rl)]


cdef void _scatter_active(int64_t a, bint leaf, int ci, int k, const double* src,
                          double* X, const int64_t* node_off, const int64_t* r,
                          const int64_t* sk_ptr, double* ys) noexcept nogil:
    """The reverse of _gather_active: node a's active solution (ci x k) into the rows
    of X (row-major, tree order) at a leaf, into the children's y_s above."""
    cdef Py_ssize_t i, t
    cdef int rl
    if leaf:
        for t in range(k):
            for i in range(ci):
                X[(node_off[a] + i) * k + t] = src[i + t * ci]
        return
    rl = <int>r[2 * a + 1]
    for t in range(k):
        for i in range(rl):
            ys[sk_ptr[2 * a + 1] * k + i + t * rl] = src[i + t * ci]
        for i in range(ci - rl):
            ys[sk_ptr[2 * a + 2] * k + i + t * (ci - rl)] = src[rl + i + t * ci]


def solve_up_level(const int64_t[::1] nodes, bint leaf, int k,
                   const double[:, ::1] Bt,                 # IN  N x k, tree order (leaves)
                   const int64_t[::1] node_off, Layout lay, Factors f,
                   double[::1] bhat,                        # IN children / OUT node: r x k at sk_ptr*k
                   double[::1] wbuf,                        # OUT red x k at rd_ptr*k
                   const int64_t[::1] work_ptr, double[::1] work,
                   int n_threads):
    """Upward solve pass on one level: b'_r = b_r - T^T b_s, w = L^-1 b'_r,
    bhat_s = b_s - G^T w."""
    cdef const int64_t[::1] c = lay.c, r = lay.r, red = lay.red
    cdef const int64_t[::1] sk_ptr = lay.sk_ptr, sk_pos = lay.sk_pos
    cdef const int64_t[::1] rd_ptr = lay.rd_ptr, rd_pos = lay.rd_pos
    cdef const int64_t[::1] T_ptr = lay.T_ptr, L_ptr = lay.L_ptr, G_ptr = lay.G_ptr
    cdef const double[::1] T_data = lay.T_data, L_data = f.L_data, G_data = f.G_data
    cdef Py_ssize_t q, i, t, nq = nodes.shape[0]
    cdef int64_t a
    cdef int ci, ra, rd
    cdef double* bact
    cdef double* bs
    cdef double* br
    cdef const int64_t* skp
    cdef const int64_t* rdp
    cdef double* bh = _ptr(bhat)
    cdef double* wb = _ptr(wbuf)
    cdef const double* td = _cptr(T_data)
    cdef const double* ld = _cptr(L_data)
    cdef const double* gd = _cptr(G_data)
    cdef const int64_t* skd = _iptr(sk_pos)
    cdef const int64_t* rdd = _iptr(rd_pos)
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = nodes[q]
        ci = <int>c[a]
        ra = <int>r[a]
        rd = <int>red[a]
        bact = &work[work_ptr[q]]
        _gather_active(a, leaf, ci, k, &Bt[0, 0], &node_off[0], &r[0], &sk_ptr[0], bh, bact)
        skp = &skd[sk_ptr[a]]
        rdp = &rdd[rd_ptr[a]]
        bs = &bh[sk_ptr[a] * k] if ra > 0 else NULL
        br = &wb[rd_ptr[a] * k] if rd > 0 else NULL
        for t in range(k):
            for i in range(ra):
                bs[i + t * ra] = bact[skp[i] + t * ci]
            for i in range(rd):
                br[i + t * rd] = bact[rdp[i] + t * ci]
        if rd == 0:
            continue
        if ra > 0:
            _gemm(b'T', b'N', rd, k, ra, -1.0, &td[T_ptr[a]], ra, bs, ra, 1.0, br, rd)
        _trsm_lower(b'N', rd, k, &ld[L_ptr[a]], rd, br, rd)
        if ra > 0:
            _gemm(b'T', b'N', ra, k, rd, -1.0, &gd[G_ptr[a]], rd, br, rd, 1.0, bs, ra)


def solve_root(bint leaf, int k, const double[:, ::1] Bt, double[:, ::1] Xt,
               const int64_t[::1] node_off, Layout lay,
               double[::1] bhat, const double[::1] Lroot, double[::1] work):
    """Root solve; writes the children's skeleton solutions into bhat (or Xt when the
    root is the only leaf)."""
    cdef const int64_t[::1] r = lay.r, sk_ptr = lay.sk_ptr
    cdef int c0 = <int>lay.c[0]
    cdef double* y = &work[0]
    if c0 == 0:
        return
    _gather_active(0, leaf, c0, k, &Bt[0, 0], &node_off[0], &r[0], &sk_ptr[0],
                   &bhat[0], y)
    _trsm_lower(b'N', c0, k, &Lroot[0], c0, y, c0)
    _trsm_lower(b'T', c0, k, &Lroot[0], c0, y, c0)
    _scatter_active(0, leaf, c0, k, y, &Xt[0, 0], &node_off[0], &r[0], &sk_ptr[0],
                    &bhat[0])


def solve_down_level(const int64_t[::1] nodes, bint leaf, int k,
                     double[:, ::1] Xt,                     # OUT N x k, tree order (leaves)
                     const int64_t[::1] node_off, Layout lay, Factors f,
                     double[::1] ys,                        # IN node y_s / OUT children
                     double[::1] wbuf,                      # IN w (overwritten)
                     const int64_t[::1] work_ptr, double[::1] work,
                     int n_threads):
    """Downward pass: y_r = L^-T (w - G y_s), x_r = y_r, x_s = y_s - T y_r."""
    cdef const int64_t[::1] c = lay.c, r = lay.r, red = lay.red
    cdef const int64_t[::1] sk_ptr = lay.sk_ptr, sk_pos = lay.sk_pos
    cdef const int64_t[::1] rd_ptr = lay.rd_ptr, rd_pos = lay.rd_pos
    cdef const int64_t[::1] T_ptr = lay.T_ptr, L_ptr = lay.L_ptr, G_ptr = lay.G_ptr
    cdef const double[::1] T_data = lay.T_data, L_data = f.L_data, G_data = f.G_data
    cdef Py_ssize_t q, i, t, nq = nodes.shape[0]
    cdef int64_t a
    cdef int ci, ra, rd
    cdef double* xact
    cdef double* tmp
    cdef double* ysa
    cdef double* w
    cdef const int64_t* skp
    cdef const int64_t* rdp
    cdef double* yd = _ptr(ys)
    cdef double* wb = _ptr(wbuf)
    cdef const double* td = _cptr(T_data)
    cdef const double* ld = _cptr(L_data)
    cdef const double* gd = _cptr(G_data)
    cdef const int64_t* skd = _iptr(sk_pos)
    cdef const int64_t* rdd = _iptr(rd_pos)
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = nodes[q]
        ci = <int>c[a]
        ra = <int>r[a]
        rd = <int>red[a]
        xact = &work[work_ptr[q]]
        tmp = &work[work_ptr[q] + <int64_t>ci * k]
        ysa = &yd[sk_ptr[a] * k] if ra > 0 else NULL
        w = &wb[rd_ptr[a] * k] if rd > 0 else NULL
        skp = &skd[sk_ptr[a]]
        rdp = &rdd[rd_ptr[a]]
        if rd > 0:
            if ra > 0:
                _gemm(b'N', b'N', rd, k, ra, -1.0, &gd[G_ptr[a]], rd, ysa, ra, 1.0, w, rd)
            _trsm_lower(b'T', rd, k, &ld[L_ptr[a]], rd, w, rd)
            if ra > 0:
                _gemm(b'N', b'N', ra, k, rd, 1.0, &td[T_ptr[a]], ra, w, rd, 0.0, tmp, ra)
        for t in range(k):
            for i in range(ra):
                xact[skp[i] + t * ci] = ysa[i + t * ra] - (tmp[i + t * ra] if rd > 0 else 0.0)
            for i in range(rd):
                xact[rdp[i] + t * ci] = w[i + t * rd]
        _scatter_active(a, leaf, ci, k, xact, &Xt[0, 0], &node_off[0], &r[0], &sk_ptr[0], yd)


def gather_T(const int64_t[::1] nodes,       # IN  nodes with a T
             const int64_t[::1] r, const int64_t[::1] c, const int64_t[::1] red,
             const int64_t[::1] proj_ptr, const double[::1] proj,   # IN  P (r x c, row-major)
             const int64_t[::1] rd_ptr, const int64_t[::1] rd_pos,  # IN  redundant positions
             const int64_t[::1] T_ptr, double[::1] T,               # OUT T = P[:, rd], col-major
             int n_threads):
    """The ID coefficients of the redundant columns, node by node."""
    cdef Py_ssize_t q, i, j, nq = nodes.shape[0]
    cdef int64_t a
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = nodes[q]
        for j in range(red[a]):
            for i in range(r[a]):
                T[T_ptr[a] + j * r[a] + i] = proj[proj_ptr[a] + i * c[a]
                                                  + rd_pos[rd_ptr[a] + j]]


def gather_B(const int64_t[::1] parents,     # IN  parent of each block
             const int64_t[::1] src_off,     # IN  where its K(skel_l, skel_r) starts in data
             const double[::1] data,         # IN  row-major blocks
             const int64_t[::1] r,
             const int64_t[::1] B_ptr, double[::1] B,   # OUT column-major, per parent
             int n_threads):
    """Sibling couplings K(skel_l, skel_r), row-major in, column-major out."""
    cdef Py_ssize_t q, i, j, nq = parents.shape[0]
    cdef int64_t a, rl, rr
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = parents[q]
        rl = r[2 * a + 1]
        rr = r[2 * a + 2]
        for i in range(rl):
            for j in range(rr):
                B[B_ptr[a] + j * rl + i] = data[src_off[q] + i * rr + j]

