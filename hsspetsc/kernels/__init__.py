"""The Cython/OpenMP kernels (typed memoryviews, prange over the nodes of a level, BLAS from scipy)."""
