# cython: language_level=3
"""(key, index) pairs: a total order, sorting and selection, nogil (shared by the
construction kernels). Ties in ``key`` are broken by ``idx``, so every result is
unique and does not depend on the thread that computes it."""
from libc.stdint cimport int64_t
from libc.stdlib cimport qsort


cdef struct KeyIdx:
    double key
    int64_t idx


cdef inline int cmp_keyidx(const void* a, const void* b) noexcept nogil:
    cdef const KeyIdx* x = <const KeyIdx*>a
    cdef const KeyIdx* y = <const KeyIdx*>b
    if x.key < y.key:
        return -1
    if x.key > y.key:
        return 1
    if x.idx < y.idx:
        return -1
    if x.idx > y.idx:
        return 1
    return 0


cdef inline void sort_keyidx(KeyIdx* v, Py_ssize_t n) noexcept nogil:
    """Sort by (key, idx)."""
    if n > 1:
        qsort(v, n, sizeof(KeyIdx), cmp_keyidx)


cdef inline void select_smallest(KeyIdx* v, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Reorder v so that v[:k] holds its k smallest elements in (key, idx) order
    (in no particular order among themselves): quickselect, median-of-three
    pivots, O(n) expected. Deterministic: the result depends only on the input."""
    cdef Py_ssize_t lo = 0, hi = n - 1, mid, i, j, t = k - 1
    cdef KeyIdx pivot, tmp
    if k <= 0 or k >= n:
        return
    while hi > lo:
        mid = lo + (hi - lo) // 2
        if cmp_keyidx(&v[mid], &v[lo]) < 0:
            tmp = v[mid]; v[mid] = v[lo]; v[lo] = tmp
        if cmp_keyidx(&v[hi], &v[lo]) < 0:
            tmp = v[hi]; v[hi] = v[lo]; v[lo] = tmp
        if cmp_keyidx(&v[hi], &v[mid]) < 0:
            tmp = v[hi]; v[hi] = v[mid]; v[mid] = tmp
        pivot = v[mid]
        i = lo
        j = hi
        while i <= j:
            while cmp_keyidx(&v[i], &pivot) < 0:
                i = i + 1
            while cmp_keyidx(&v[j], &pivot) > 0:
                j = j - 1
            if i <= j:
                tmp = v[i]; v[i] = v[j]; v[j] = tmp
                i = i + 1
                j = j - 1
        if t <= j:
            hi = j
        elif t >= i:
            lo = i
        else:
            break
