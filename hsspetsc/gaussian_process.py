"""Gaussian-process regression with scikit-learn's conventions: the log marginal
likelihood from the HSS factorization's ``logdet()``, hyper-parameters fitted by a
derivative-free search.

Model: y = f(X) + noise, f ~ GP(0, amplitude * k_h), noise ~ N(0, noise I), so with
C = amplitude K + noise I (K_ij = k(x_i, x_j), a kernel of
:mod:`hsspetsc.kernel_ridge`)

    log p(y) = -1/2 y^T C^-1 y - 1/2 log det C - N/2 log(2 pi)

(summed over the columns of y). With ``method="hss"`` C^-1 y and log det C come from
one O(N) factorization of noise I + H~ (H~ = compress(amplitude K, shift=noise)); the
log determinant of the factorization is exact for H~, so the likelihood is off by
about tr((noise I + K)^-1 (K - H~)), at most N c with c = tol the share of the noise
(tight tol: scikit-learn's value to round-off). ``"dense"``: a Cholesky of C.

Fitting (``optimizer="nelder-mead"``, the default): the likelihood is maximized over
log(bandwidth), log(amplitude) and log(noise) by scipy's Nelder-Mead, from the
given values. Decision: derivative-free, because its gradient needs
tr(C^-1 dC/dtheta), which for an HSS matrix is an estimate by random probes; a
noisy gradient makes quasi-Newton line searches unreliable, while each likelihood
value here is cheap (one compression and factorization) and there are only three
parameters. ``optimizer=None`` keeps the given values.

``predict(X, return_std=True)``: the posterior mean amplitude k(X*, X) C^-1 y and
standard deviation of f (without the noise, as scikit-learn's ``alpha=noise``).
"""
import time

import numpy as np
import scipy.linalg
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .compression.compress import compress
from .kernel_ridge import (
    _validate_data,
    check_kernel_params,
    cross_kernel,
    predict_chunks,
)
from .sources import KernelSource
from .util.validation import check_choice, check_float, check_int


class _Fit:
    """C^-1 y, log det C and solves with C at one set of hyper-parameters."""

    def __init__(self, est, X, y, bandwidth, amplitude, noise):
        n = X.shape[0]
        src = KernelSource(X, est.kernel, bandwidth, scale=amplitude,
                           n_threads=est.n_threads)
        method = est.method
        if method == "auto":
            method = "dense" if n <= 4096 else "hss"
        self.method = method
        if method == "dense":
            idx = np.arange(n)
            C = src.entries(idx, idx)
            C[np.diag_indices(n)] += noise
            try:
                self._cf = scipy.linalg.cho_factor(C, lower=True, overwrite_a=True,
                                                   check_finite=False)
            except np.linalg.LinAlgError:
                raise np.linalg.LinAlgError(
                    f"GaussianProcessRegressor: amplitude K + noise I is not positive "
                    f"definite at noise = {noise:g}") from None
            self.logdet = 2.0 * float(np.sum(np.log(np.diag(self._cf[0]))))
        else:
            H = compress(src, shift=noise, tol=est.tol if est.tol else 0.1,
                                  leaf_size=min(est.leaf_size, n), seed=est.seed,
                                  n_threads=est.n_threads)
            self._F = H.factorize(shift=noise, n_threads=est.n_threads)
            self.logdet = float(self._F.logdet())
        self.n_threads = est.n_threads
        self.coef = self.solve(y)
        Y = y.reshape(n, -1)
        fit = float(np.sum(Y * self.coef.reshape(n, -1)))
        self.lml = -0.5 * fit - 0.5 * Y.shape[1] * (self.logdet + n * np.log(2 * np.pi))

    def solve(self, B):
        if self.method == "dense":
            return scipy.linalg.cho_solve(self._cf, B, check_finite=False)
        return self._F.solve(B, n_threads=self.n_threads)


class GaussianProcessRegressor(RegressorMixin, BaseEstimator):
    """Gaussian-process regression (module docstring).

    Parameters
    ----------
    kernel : "gaussian" (default), "laplace", "matern32" or "imq"
    bandwidth, amplitude, noise : float > 0 (defaults 1.0, 1.0, 1e-2)
        Initial (or, with ``optimizer=None``, fixed) hyper-parameters.
    optimizer : "nelder-mead" (default) or None
    max_iter : int >= 1, default 100
        Likelihood evaluations of the search at most (about).
    method : "auto" (default: dense up to 4096 samples, else "hss"), "hss", "dense"
    tol : float in (0, 100] or None
        "hss": the share c of the noise (default 0.1).
    leaf_size, seed, n_threads
        As for :func:`hsspetsc.compress`.

    Attributes
    ----------
    bandwidth_, amplitude_, noise_ : the fitted hyper-parameters
    log_marginal_likelihood_value_ : float at them
    alpha_ : ndarray, C^-1 y
    X_train_ : ndarray
    fit_history_ : list of (bandwidth, amplitude, noise, log likelihood) evaluated
    """

    def __init__(self, kernel="gaussian", bandwidth=1.0, amplitude=1.0, noise=1e-2,
                 optimizer="nelder-mead", max_iter=100, method="auto", tol=None,
                 leaf_size=128, seed=0, n_threads=None):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.amplitude = amplitude
        self.noise = noise
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.method = method
        self.tol = tol
        self.leaf_size = leaf_size
        self.seed = seed
        self.n_threads = n_threads

    def _check_params(self):
        where = type(self).__name__
        check_kernel_params(self, where)
        if self.method == "pcg":
            raise ValueError(f"The 'method' parameter of {where} must be 'auto', 'hss' "
                             f"or 'dense' (CG gives no log determinant). Got 'pcg'.")
        for name in ("amplitude", "noise"):
            check_float(getattr(self, name), name, where, lo=0.0, lo_open=True)
        if self.optimizer is not None:
            check_choice(self.optimizer, "optimizer", where, ("nelder-mead",))
        check_int(self.max_iter, "max_iter", where, lo=1)

    def log_marginal_likelihood(self, theta=None):
        """The log marginal likelihood at ``theta`` = log([bandwidth, amplitude,
        noise]) (default: the fitted values) on the training data."""
        check_is_fitted(self, "alpha_")
        if theta is None:
            return self.log_marginal_likelihood_value_
        b, a, s = np.exp(np.asarray(theta, dtype=np.float64))
        return _Fit(self, self.X_train_, self._y, b, a, s).lml

    def fit(self, X, y):
        self._check_params()
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True, reset=True)
        if X.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples. Got "
                             f"n_samples = {X.shape[0]}.")
        y = np.asarray(y, dtype=np.float64)
        history = []

        def neg_lml(theta):
            b, a, s = np.exp(theta)
            try:
                v = _Fit(self, X, y, b, a, s).lml
            except np.linalg.LinAlgError:
                v = -np.inf
            history.append((float(b), float(a), float(s), float(v)))
            return -v if np.isfinite(v) else 1e300

        theta = np.log([float(self.bandwidth), float(self.amplitude), float(self.noise)])
        t = time.perf_counter()
        if self.optimizer == "nelder-mead":
            res = minimize(neg_lml, theta, method="Nelder-Mead",
                           options={"maxfev": int(self.max_iter), "xatol": 1e-3,
                                    "fatol": 1e-6 * max(1.0, abs(neg_lml(theta)))})
            theta = res.x
        b, a, s = np.exp(theta)
        fit = _Fit(self, X, y, b, a, s)
        self.fit_time_ = time.perf_counter() - t
        self.bandwidth_, self.amplitude_, self.noise_ = float(b), float(a), float(s)
        self.log_marginal_likelihood_value_ = fit.lml
        self.alpha_ = fit.coef
        self.method_ = fit.method
        self._fit = fit
        self.X_train_, self._y = X, y
        self.fit_history_ = history
        self.n_iter_ = max(len(history), 1)
        return self

    def predict(self, X, return_std=False):
        check_is_fitted(self, "alpha_")
        X = _validate_data(self, X, reset=False)
        mean = predict_chunks(X, self.X_train_, self.alpha_, self.kernel, self.bandwidth_,
                              self.amplitude_, self.n_threads)
        if not return_std:
            return mean
        var = np.empty(X.shape[0])
        k0 = self.amplitude_ * KernelSource(X[:1], self.kernel, self.bandwidth_).diagonal()[0]
        step = max(1, int(2 ** 24 // max(self.X_train_.shape[0], 1)))
        for r0 in range(0, X.shape[0], step):
            Ks = cross_kernel(X[r0:r0 + step], self.X_train_, self.kernel, self.bandwidth_,
                              self.amplitude_, self.n_threads)
            V = self._factor().solve(np.ascontiguousarray(Ks.T))
            var[r0:r0 + step] = k0 - np.einsum("ij,ji->i", Ks, V)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def _factor(self):
        if getattr(self, "_fit", None) is None:       # after unpickling
            self._fit = _Fit(self, self.X_train_, self._y, self.bandwidth_,
                             self.amplitude_, self.noise_)
        return self._fit

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_fit", None)        # factored again on demand
        return state

    def _more_tags(self):
        return {"multioutput": True}
