# cython: language_level=3
"""BLAS/LAPACK from scipy.linalg.cython_blas / cython_lapack as ``noexcept nogil``
inline wrappers, shared by every kernel module (``from .blas cimport dgemm``).

scipy declares these without ``noexcept``, so Cython 3 would take the GIL after each
call to check for a Python exception; inside ``prange`` that serializes the threads.
They never raise, so each wrapper calls the routine through a pointer cast to
``noexcept nogil``. The wrappers are inline: each module gets its own copy.
"""
cimport scipy.linalg.cython_blas as cython_blas
cimport scipy.linalg.cython_lapack as cython_lapack

ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                         double*, int*, double*, double*, int*) noexcept nogil
ctypedef void (*dtrsm_t)(char*, char*, char*, char*, int*, int*, double*, double*,
                         int*, double*, int*) noexcept nogil
ctypedef void (*dpotrf_t)(char*, int*, double*, int*, int*) noexcept nogil
ctypedef void (*dgeqrf_t)(int*, int*, double*, int*, double*, double*, int*,
                          int*) noexcept nogil
ctypedef void (*dgeqp3_t)(int*, int*, double*, int*, int*, double*, double*, int*,
                          int*) noexcept nogil


cdef inline void dgemm(char* ta, char* tb, int* m, int* n, int* k, double* alpha,
                       double* a, int* lda, double* b, int* ldb, double* beta,
                       double* c, int* ldc) noexcept nogil:
    (<dgemm_t>cython_blas.dgemm)(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline void dtrsm(char* side, char* uplo, char* ta, char* diag, int* m, int* n,
                       double* alpha, double* a, int* lda, double* b,
                       int* ldb) noexcept nogil:
    (<dtrsm_t>cython_blas.dtrsm)(side, uplo, ta, diag, m, n, alpha, a, lda, b, ldb)


cdef inline void dpotrf(char* uplo, int* n, double* a, int* lda, int* info) noexcept nogil:
    (<dpotrf_t>cython_lapack.dpotrf)(uplo, n, a, lda, info)


cdef inline void dgeqrf(int* m, int* n, double* a, int* lda, double* tau, double* work,
                        int* lwork, int* info) noexcept nogil:
    (<dgeqrf_t>cython_lapack.dgeqrf)(m, n, a, lda, tau, work, lwork, info)


cdef inline void dgeqp3(int* m, int* n, double* a, int* lda, int* jpvt, double* tau,
                        double* work, int* lwork, int* info) noexcept nogil:
    (<dgeqp3_t>cython_lapack.dgeqp3)(m, n, a, lda, jpvt, tau, work, lwork, info)

