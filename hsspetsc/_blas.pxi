# Included by the kernels (include "_blas.pxi").
"""BLAS/LAPACK entry points from scipy.linalg.cython_blas / cython_lapack, retyped
as ``noexcept nogil`` function pointers.

scipy declares them without ``noexcept``, so Cython 3 would take the GIL after
every call to check for a Python exception: inside ``prange`` that serializes the
threads. They never raise, so the pointers are cast once here.
"""
cimport scipy.linalg.cython_blas as cython_blas
cimport scipy.linalg.cython_lapack as cython_lapack

ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                         double*, int*, double*, double*, int*) noexcept nogil
ctypedef void (*dtrsm_t)(char*, char*, char*, char*, int*, int*, double*, double*,
                         int*, double*, int*) noexcept nogil
ctypedef void (*dpotrf_t)(char*, int*, double*, int*, int*) noexcept nogil

cdef dgemm_t dgemm = <dgemm_t>cython_blas.dgemm
cdef dtrsm_t dtrsm = <dtrsm_t>cython_blas.dtrsm
cdef dpotrf_t dpotrf = <dpotrf_t>cython_lapack.dpotrf
