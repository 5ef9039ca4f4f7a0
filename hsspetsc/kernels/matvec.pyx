# cython: language_level=3
"""HSS/FMM matvec passes (private).

All arrays are flat, in tree order, row-major. Node ``a`` of a complete binary tree
with ``n_levels`` levels below the root: children ``2a+1, 2a+2``; level ``l`` holds
nodes ``2**l - 1 .. 2**(l+1) - 2``; leaves are the last level.

Per node: ``node_off/node_size`` (its rows of W), ``rank`` and ``skel_ptr`` (its rows
of the skeleton buffers What/Uhat; siblings are adjacent, so ``[What_l; What_r]`` is
one contiguous block), ``proj_ptr`` (its interpolation matrix P, row-major
``rank x ncols``, ncols = node size at a leaf, rank_l + rank_r above).

Each pass is one kernel over a list of nodes (a level, or a rank's share of it);
the caller runs them level by level: L2L (near field), N2S up, S2S (far field),
S2N down. A kernel takes the basis as one typed object (:class:`Basis`) and an
interaction list as another (:class:`Lists`), made once per matrix.

Interaction lists are CSR over targets: ``*_ptr[t] .. *_ptr[t+1]`` give source node
``*_src``, block offset ``*_blk`` and ``*_trans``: 0 when the stored block is
(target x source), 1 when it is (source x target) and is applied transposed. Each
unordered pair is stored once.

The kernels check nothing. BLAS runs inside prange: the caller holds BLAS to one
thread (threadpoolctl) around the call.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t, int8_t
from libc.string cimport memset
from .blas cimport dgemm


cdef void _gemv_rm(char ta, int m, int k, const double* A, int lda, const double* x,
                   int incx, double beta, double* y, int incy) noexcept nogil:
    """Row-major y (m) = op(A) x + beta y; plain loops (memory-bound, no call cost).

    ta == 'N': A is m x k, y_i = A[i, :] . x (four accumulators);
    ta == 'T': A is k x m, y += x_j A[j, :] (contiguous axpy per row)."""
    cdef int i, j
    cdef double s0, s1, s2, s3, xj
    cdef const double* row
    if ta == b'N':
        for i in range(m):
            row = &A[<Py_ssize_t>i * lda]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            j = 0
            while j + 3 < k:
                s0 = s0 + row[j] * x[j * incx]
                s1 = s1 + row[j + 1] * x[(j + 1) * incx]
                s2 = s2 + row[j + 2] * x[(j + 2) * incx]
                s3 = s3 + row[j + 3] * x[(j + 3) * incx]
                j = j + 4
            while j < k:
                s0 = s0 + row[j] * x[j * incx]
                j = j + 1
            if beta == 0.0:
                y[i * incy] = (s0 + s1) + (s2 + s3)
            else:
                y[i * incy] = beta * y[i * incy] + ((s0 + s1) + (s2 + s3))
    else:
        if beta == 0.0:
            for i in range(m):
                y[i * incy] = 0.0
        elif beta != 1.0:
            for i in range(m):
                y[i * incy] = beta * y[i * incy]
        for j in range(k):
            xj = x[j * incx]
            row = &A[<Py_ssize_t>j * lda]
            if incy == 1:
                for i in range(m):
                    y[i] = y[i] + xj * row[i]
            else:
                for i in range(m):
                    y[i * incy] = y[i * incy] + xj * row[i]


cdef void _gemm_rm(char ta, char tb, int m, int n, int k, double alpha,
                   const double* A, int lda, const double* B, int ldb,
                   double beta, double* C, int ldc) noexcept nogil:
    """Row-major C (m x n) = alpha op(A) op(B) + beta C; own loops when n == 1."""
    cdef int i
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0.0:
            for i in range(m):
                memset(&C[i * ldc], 0, n * sizeof(double))
        return
    if n == 1 and tb == b'N' and alpha == 1.0:
        # one vector: plain loops read each block once with no call overhead
        # (1.8x faster than dgemv here)
        _gemv_rm(ta, m, k, A, lda, B, ldb, beta, C, ldc)
        return
    # C^T = op(B)^T op(A)^T in column-major terms.
    dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
          &beta, C, &ldc)


cdef void _apply_list(int64_t t, int64_t rows_t, double* out, const double* x,
                      int k, const int64_t* ptr, const int64_t* src,
                      const int64_t* blk, const int8_t* trans,
                      const double* data, const int64_t* rows_of,
                      const int64_t* xoff) noexcept nogil:
    """out (rows_t x k) += sum over the list of target t of B x_src."""
    cdef int64_t e, s, rs
    for e in range(ptr[t], ptr[t + 1]):
        s = src[e]
        rs = rows_of[s]
        if trans[e] == 0:   # stored rows_t x rs
            _gemm_rm(b'N', b'N', <int>rows_t, k, <int>rs, 1.0, &data[blk[e]], <int>rs,
                     &x[xoff[s] * k], k, 1.0, out, k)
        else:               # stored rs x rows_t
            _gemm_rm(b'T', b'N', <int>rows_t, k, <int>rs, 1.0, &data[blk[e]], <int>rows_t,
                     &x[xoff[s] * k], k, 1.0, out, k)


# ---------------------------------------------------------------------------
# The passes over given node lists: one level, or any set of nodes whose inputs are
# ready (a rank of a distributed matrix: its subtree, then its ancestors). Skeleton
# buffers are flat (rows at skel_ptr[a] * k); W and U are indexed through node_off,
# which may be shifted (a rank's slice of the tree order).

cdef inline const double* _cp(const double[::1] x) noexcept nogil:
    return &x[0] if x.shape[0] > 0 else NULL


cdef inline const int64_t* _ip(const int64_t[::1] x) noexcept nogil:
    return &x[0] if x.shape[0] > 0 else NULL


cdef class Basis:
    """The nested basis as the passes read it, per node a: its rows of W/U
    (node_off, node_size; node_off may be shifted to a rank's slice of the tree
    order), its skeleton rank and rows of the skeleton buffers (rank, skel_ptr), its
    interpolation matrix (proj_ptr into proj); first_leaf = 2**n_levels - 1."""
    cdef const int64_t[::1] node_off, node_size, rank, skel_ptr, proj_ptr
    cdef const double[::1] proj
    cdef int64_t first_leaf

    def __init__(self, node_off, node_size, rank, skel_ptr, proj_ptr, proj, first_leaf):
        self.node_off, self.node_size = node_off, node_size
        self.rank, self.skel_ptr, self.proj_ptr, self.proj = rank, skel_ptr, proj_ptr, proj
        self.first_leaf = first_leaf


cdef class Lists:
    """An interaction list, CSR over targets (see the module docstring): ptr, src,
    blk, trans, and the stored blocks (data)."""
    cdef const int64_t[::1] ptr, src, blk
    cdef const int8_t[::1] trans
    cdef const double[::1] data

    def __init__(self, ptr, src, blk, trans, data):
        self.ptr, self.src, self.blk, self.trans, self.data = ptr, src, blk, trans, data


def l2l_nodes(const int64_t[::1] nodes, const double[:, ::1] W, double[:, ::1] U,
              Basis basis, Lists near, int n_threads):
    """U_b = sum_{a in Near(b)} K(b, a) W_a for the leaves b in ``nodes``."""
    cdef Py_ssize_t q, nq = nodes.shape[0]
    cdef int k = <int>W.shape[1]
    cdef int64_t a
    cdef const int64_t[::1] node_off = basis.node_off, node_size = basis.node_size
    cdef const int64_t[::1] near_ptr = near.ptr, near_src = near.src, near_blk = near.blk
    cdef const int8_t[::1] near_trans = near.trans
    cdef const double[::1] near_data = near.data
    cdef const int8_t* nt = &near_trans[0] if near_trans.shape[0] > 0 else NULL
    if nq == 0 or k == 0 or W.shape[0] == 0:
        return
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = nodes[q]
        memset(&U[0, 0] + node_off[a] * k, 0, node_size[a] * k * sizeof(double))
        if near_ptr[a + 1] > near_ptr[a]:
            _apply_list(a, node_size[a], &U[0, 0] + node_off[a] * k, &W[0, 0], k,
                        &near_ptr[0], _ip(near_src), _ip(near_blk), nt,
                        _cp(near_data), &node_size[0], &node_off[0])


def n2s_nodes(const int64_t[::1] nodes, const int64_t[::1] seg,
              const double[:, ::1] W, double[::1] What, int k, Basis basis,
              int n_threads):
    """What_a = P_a W_a (leaves: a >= first_leaf) or P_a [What_l; What_r], for the
    nodes of each segment ``nodes[seg[s]:seg[s+1]]`` in turn (bottom-up levels: a
    segment's inputs come from the segments before it)."""
    cdef Py_ssize_t q, g, q0, q1
    cdef int64_t a, ncols
    cdef int64_t first_leaf = basis.first_leaf
    cdef const int64_t[::1] node_off = basis.node_off, node_size = basis.node_size
    cdef const int64_t[::1] rank = basis.rank, skel_ptr = basis.skel_ptr
    cdef const int64_t[::1] proj_ptr = basis.proj_ptr
    cdef const double* Pp = _cp(basis.proj)
    cdef double* Wh = &What[0]
    if k == 0:
        return
    for g in range(seg.shape[0] - 1):
        q0 = seg[g]
        q1 = seg[g + 1]
        for q in prange(q0, q1, nogil=True, num_threads=n_threads, schedule="dynamic"):
            a = nodes[q]
            if rank[a] == 0:
                continue
            if a >= first_leaf:
                _gemm_rm(b'N', b'N', <int>rank[a], k, <int>node_size[a], 1.0,
                         &Pp[proj_ptr[a]], <int>node_size[a], &W[0, 0] + node_off[a] * k,
                         k, 0.0, &Wh[skel_ptr[a] * k], k)
            else:
                ncols = rank[2 * a + 1] + rank[2 * a + 2]
                _gemm_rm(b'N', b'N', <int>rank[a], k, <int>ncols, 1.0,
                         &Pp[proj_ptr[a]], <int>ncols, &Wh[skel_ptr[2 * a + 1] * k], k,
                         0.0, &Wh[skel_ptr[a] * k], k)


def s2s_nodes(const int64_t[::1] nodes, const double[::1] What, double[::1] Uhat, int k,
              Basis basis, Lists far, int n_threads):
    """Uhat_a = sum_{b in Far(a)} K(skel a, skel b) What_b for the nodes given."""
    cdef Py_ssize_t q, nq = nodes.shape[0]
    cdef int64_t a
    cdef const int64_t[::1] rank = basis.rank, skel_ptr = basis.skel_ptr
    cdef const int64_t[::1] far_ptr = far.ptr, far_src = far.src, far_blk = far.blk
    cdef const int8_t[::1] far_trans = far.trans
    cdef const double[::1] far_data = far.data
    cdef double* Uh = &Uhat[0]
    cdef const int8_t* ft = &far_trans[0] if far_trans.shape[0] > 0 else NULL
    if nq == 0 or k == 0:
        return
    for q in prange(nq, nogil=True, num_threads=n_threads, schedule="dynamic"):
        a = nodes[q]
        if rank[a] > 0:
            memset(&Uh[skel_ptr[a] * k], 0, rank[a] * k * sizeof(double))
            if far_ptr[a + 1] > far_ptr[a]:
                _apply_list(a, rank[a], &Uh[skel_ptr[a] * k], &What[0], k, &far_ptr[0],
                            _ip(far_src), _ip(far_blk), ft, _cp(far_data), &rank[0],
                            &skel_ptr[0])


def s2n_nodes(const int64_t[::1] nodes, const int64_t[::1] seg,
              double[:, ::1] U, double[::1] Uhat, int k, Basis basis, int n_threads):
    """U_a += P_a^T Uhat_a (leaves) or [Uhat_l; Uhat_r] += P_a^T Uhat_a, for the
    nodes of each segment in turn (top-down levels)."""
    cdef Py_ssize_t q, g, q0, q1
    cdef int64_t a, ncols
    cdef int64_t first_leaf = basis.first_leaf
    cdef const int64_t[::1] node_off = basis.node_off, node_size = basis.node_size
    cdef const int64_t[::1] rank = basis.rank, skel_ptr = basis.skel_ptr
    cdef const int64_t[::1] proj_ptr = basis.proj_ptr
    cdef const double* Pp = _cp(basis.proj)
    cdef double* Uh = &Uhat[0]
    if k == 0:
        return
    for g in range(seg.shape[0] - 1):
        q0 = seg[g]
        q1 = seg[g + 1]
        for q in prange(q0, q1, nogil=True, num_threads=n_threads, schedule="dynamic"):
            a = nodes[q]
            if rank[a] == 0:
                continue
            if a >= first_leaf:
                _gemm_rm(b'T', b'N', <int>node_size[a], k, <int>rank[a], 1.0,
                         &Pp[proj_ptr[a]], <int>node_size[a], &Uh[skel_ptr[a] * k], k,
                         1.0, &U[0, 0] + node_off[a] * k, k)
            else:
                ncols = rank[2 * a + 1] + rank[2 * a + 2]
                _gemm_rm(b'T', b'N', <int>ncols, k, <int>rank[a], 1.0,
                         &Pp[proj_ptr[a]], <int>ncols, &Uh[skel_ptr[a] * k], k,
                         1.0, &Uh[skel_ptr[2 * a + 1] * k], k)
