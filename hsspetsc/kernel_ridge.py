"""Kernel ridge regression with scikit-learn's conventions, solved by
:func:`hsspetsc.solve`.

``KernelRidge(kernel="gaussian", bandwidth=h, alpha=lam).fit(X, y)`` finds the
dual coefficients of (K + lam I) c = y, K_ij = k(x_i, x_j), and ``predict`` returns
K(X*, X) c. It is scikit-learn's ``KernelRidge`` (same alpha, same dual problem;
for the Gaussian kernel ``gamma = 1 / (2 h^2)``) with the solver chosen for large
N: the HSS factorization of lam I + H~ directly (``method="hss"``, shift-aware
accuracy ``tol`` as a share of alpha), CG on the exact kernel preconditioned by it
(``"pcg"``), the dense Cholesky (``"dense"``), or ``"auto"``. y may have several
columns (one-hot labels: kernel classification by regression).

Kernels: the radial kernels of :class:`hsspetsc.KernelSource`, k(x, y) = f(r / h),
r = |x - y|: "gaussian" exp(-r^2 / (2 h^2)), "laplace" exp(-r / h), "matern32"
(1 + sqrt(3) r / h) exp(-sqrt(3) r / h), "imq" 1 / sqrt(1 + (r / h)^2).
"""
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

try:                                   # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:                    # older: the estimator's own method
    def _validate_data(est, *args, **kwargs):
        return est._validate_data(*args, **kwargs)

from .krylov import METHODS, solve
from .sources import KernelSource
from .util.validation import check_choice, check_float, check_int

KERNELS = ("gaussian", "laplace", "matern32", "imq")
CROSS_CHUNK_BYTES = 128 * 2 ** 20


def cross_kernel(A, B, kernel, bandwidth, scale=1.0, n_threads=None):
    """The matrix scale * k(A_i, B_j) (len(A) x len(B)), by the evaluator of
    :class:`hsspetsc.KernelSource` (the same numbers as the training matrix)."""
    src = KernelSource(np.vstack([B, A]), kernel, bandwidth, scale=scale,
                       n_threads=n_threads)
    nb = B.shape[0]
    return src.entries(np.arange(nb, nb + A.shape[0]), np.arange(nb))


def predict_chunks(A, B, coef, kernel, bandwidth, scale=1.0, n_threads=None):
    """cross_kernel(A, B) @ coef, a chunk of rows of A at a time."""
    out = np.empty((A.shape[0],) + coef.shape[1:])
    step = max(1, int(CROSS_CHUNK_BYTES // (8 * max(B.shape[0], 1))))
    for r0 in range(0, A.shape[0], step):
        Kc = cross_kernel(A[r0:r0 + step], B, kernel, bandwidth, scale, n_threads)
        out[r0:r0 + step] = Kc @ coef
    return out


def check_kernel_params(est, where):
    """The kernel, bandwidth and solver parameters of an estimator, validated."""
    check_choice(est.kernel, "kernel", where, KERNELS)
    check_float(est.bandwidth, "bandwidth", where, lo=0.0, lo_open=True)
    check_choice(est.method, "method", where, METHODS)
    if est.tol is not None:
        check_float(est.tol, "tol", where, lo=0.0, hi=100.0, lo_open=True)
    check_int(est.leaf_size, "leaf_size", where, lo=2)
    check_int(est.seed, "seed", where, lo=0)


class KernelRidge(RegressorMixin, BaseEstimator):
    """Kernel ridge regression: (K + alpha I) dual_coef_ = y, solved by
    :func:`hsspetsc.solve`.

    Parameters
    ----------
    kernel : "gaussian" (default), "laplace", "matern32" or "imq"
    bandwidth : float > 0, default 1.0
        h in k(r / h) (module docstring).
    alpha : float > 0, default 1.0
        The ridge lam (scikit-learn's name).
    method : "auto" (default), "hss", "pcg" or "dense"
        The solver (:func:`hsspetsc.solve`).
    tol : float in (0, 100] or None
        Share c of alpha for the compression (``precond_tol`` of solve; its
        default per method when None).
    cg_tol : float in (0, 1), default 1e-6
        Relative residual of CG ("pcg").
    leaf_size : int >= 2, default 128
    seed : int >= 0, default 0
    n_threads : int or None

    Attributes
    ----------
    dual_coef_ : ndarray (n_samples,) or (n_samples, n_targets)
    X_fit_ : ndarray (n_samples, n_features)
    n_features_in_ : int
    fit_info_ : :class:`hsspetsc.SolveInfo` (method, residual, times, ...)
    """

    def __init__(self, kernel="gaussian", bandwidth=1.0, alpha=1.0, method="auto",
                 tol=None, cg_tol=1e-6, leaf_size=128, seed=0, n_threads=None):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.alpha = alpha
        self.method = method
        self.tol = tol
        self.cg_tol = cg_tol
        self.leaf_size = leaf_size
        self.seed = seed
        self.n_threads = n_threads

    def fit(self, X, y):
        where = type(self).__name__
        check_kernel_params(self, where)
        check_float(self.alpha, "alpha", where, lo=0.0, lo_open=True)
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True,
                                  reset=True)
        if X.shape[0] < 2:
            raise ValueError(f"{where} needs at least 2 samples. Got n_samples = "
                             f"{X.shape[0]}.")
        src = KernelSource(X, self.kernel, self.bandwidth, n_threads=self.n_threads)
        self.dual_coef_, self.fit_info_ = solve(
            src, y, float(self.alpha), tol=self.cg_tol, method=self.method,
            precond_tol=self.tol, leaf_size=min(self.leaf_size, X.shape[0]),
            seed=self.seed, n_threads=self.n_threads)
        self.X_fit_ = X
        return self

    def predict(self, X):
        check_is_fitted(self, "dual_coef_")
        X = _validate_data(self, X, reset=False)
        return predict_chunks(X, self.X_fit_, self.dual_coef_, self.kernel,
                              self.bandwidth, n_threads=self.n_threads)

    def _more_tags(self):
        return {"multioutput": True}
