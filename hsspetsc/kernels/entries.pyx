# cython: language_level=3
"""Block evaluation without the GIL (private).

A source whose entries can be computed in C gives a :class:`BlockEvaluator`
(``Source.evaluator()``): ``fill(I, ni, J, nj, out, ld)`` writes the block
K[I][:, J] row-major into ``out`` with leading dimension ``ld``, serially, with no
Python object touched. :func:`fill_blocks` evaluates many blocks at once in one
``prange`` region over (block, tile) tasks, so a level's blocks of any sizes
load-balance over the threads. Kernels check nothing; callers validate.
"""
from cython.parallel cimport prange
from libc.math cimport NAN
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


cdef class BlockEvaluator:
    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        pass


cdef class DenseEvaluator(BlockEvaluator):
    """Entries of a dense row-major array."""
    cdef const double[:, ::1] A

    def __init__(self, const double[:, ::1] A):
        self.A = A

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t a, b
        cdef const double* row
        for a in range(ni):
            row = &self.A[I[a], 0]
            for b in range(nj):
                out[a * ld + b] = row[J[b]]


def fill_blocks(BlockEvaluator ev not None,
                const int64_t[::1] row_start,  # IN  rows of block b: row_idx[row_start[b]:][:row_len[b]]
                const int64_t[::1] row_idx,
                const int64_t[::1] col_start,  # IN  columns of block b, the same way
                const int64_t[::1] col_len,
                const int64_t[::1] col_idx,
                const int64_t[::1] out_off,    # IN  block b starts at out[out_off[b]], row-major
                const int64_t[::1] task_blk,   # IN  task t: rows task_r0[t]:task_r1[t],
                const int64_t[::1] task_r0,    #     columns task_c0[t]:task_c1[t] of block task_blk[t]
                const int64_t[::1] task_r1,
                const int64_t[::1] task_c0,
                const int64_t[::1] task_c1,
                double[::1] out,               # OUT
                int n_threads):
    """Evaluate every block: out[out_off[b] + i * col_len[b] + j] = K[row i, col j]."""
    cdef Py_ssize_t t, b, nc, r0, c0
    cdef Py_ssize_t n_tasks = task_blk.shape[0]
    if n_tasks == 0:
        return
    for t in prange(n_tasks, nogil=True, num_threads=n_threads, schedule="dynamic"):
        b = task_blk[t]
        r0 = task_r0[t]
        c0 = task_c0[t]
        nc = col_len[b]
        ev.fill(&row_idx[row_start[b] + r0], task_r1[t] - r0, &col_idx[col_start[b] + c0],
                task_c1[t] - c0, &out[out_off[b] + r0 * nc + c0], nc)


cdef class SubsetEvaluator(BlockEvaluator):
    """Entries of the principal submatrix K[S][:, S] of another evaluator's matrix."""
    cdef BlockEvaluator inner
    cdef const int64_t[::1] S

    def __init__(self, BlockEvaluator inner not None, const int64_t[::1] S):
        self.inner = inner
        self.S = S

    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil:
        cdef Py_ssize_t a
        cdef int64_t* gi = <int64_t*>malloc((ni + nj + 1) * sizeof(int64_t))
        if gi == NULL:          # out of memory: NaN, which the reader refuses
            for a in range(ni):
                out[a * ld] = NAN
            return
        for a in range(ni):
            gi[a] = self.S[I[a]]
        for a in range(nj):
            gi[ni + a] = self.S[J[a]]
        self.inner.fill(gi, ni, &gi[ni], nj, out, ld)
        free(gi)
