"""Standard test problems: kernel matrices on points and the SPD test suite."""

from ..sources import PUBLIC_KERNELS, KernelSource
from ..util.validation import as_float_array, check_choice, check_finite, check_float
from ._testsuite import TESTSUITE_NAMES, cache_dir, testsuite

__all__ = ["kernel_matrix", "testsuite", "TESTSUITE_NAMES", "KERNELS", "cache_dir"]

KERNELS = PUBLIC_KERNELS


def kernel_matrix(points, kernel="gaussian", bandwidth=1.0, shift=0.0, n_threads=None):
    """Kernel matrix K_ij = k(x_i, x_j) (+ shift on the diagonal) as an entry source.

    Entries are evaluated on demand in a Cython prange kernel; nothing N x N is
    formed. With r = |x_i - x_j| and h = ``bandwidth``:

    - ``gaussian``   exp(-r^2 / (2 h^2))
    - ``laplace``    exp(-r / h)
    - ``matern32``   (1 + sqrt(3) r / h) exp(-sqrt(3) r / h)
    - ``imq``        1 / sqrt(r^2 + h^2)
    - ``polynomial`` (x_i . x_j + h)^2   (h is the offset, must be >= 0)

    Parameters
    ----------
    points : (N, d) array of finite floats
    kernel : str
        One of the names above.
    bandwidth : float > 0 (>= 0 for the polynomial)
    shift : float >= 0
        Added to the diagonal (a nugget / ridge).
    """
    where = "kernel_matrix"
    kernel = check_choice(kernel, "kernel", where, KERNELS)
    X = as_float_array(points, "points", where, ndim=2, warn_precision=True)
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"The 'points' parameter of {where} must be a non-empty (N, d) "
                         f"array. Got shape {X.shape} instead.")
    check_finite(X, "points", where)
    if kernel == "polynomial":
        h = check_float(bandwidth, "bandwidth", where, lo=0.0)
    else:
        h = check_float(bandwidth, "bandwidth", where, lo=0.0, lo_open=True)
    shift = check_float(shift, "shift", where, lo=0.0)
    return KernelSource(X, kernel, h, shift=shift, n_threads=n_threads)
