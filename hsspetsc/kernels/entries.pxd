# cython: language_level=3
from libc.stdint cimport int64_t


cdef class BlockEvaluator:
    """Evaluates blocks of a matrix without the GIL (see entries.pyx)."""
    cdef void fill(self, const int64_t* I, Py_ssize_t ni, const int64_t* J,
                   Py_ssize_t nj, double* out, Py_ssize_t ld) noexcept nogil
