"""The estimators against scikit-learn's on small data: KernelRidge and
GaussianProcessRegressor, every solver at tight tolerance, and scikit-learn-style
errors and shapes."""
import warnings

import numpy as np
import pytest
import sklearn.gaussian_process as skgp
import sklearn.kernel_ridge as skkr
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern

from hsspetsc.gaussian_process import GaussianProcessRegressor
from hsspetsc.kernel_ridge import KernelRidge


def _data(n=600, d=6, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    Y = np.c_[np.sin(3 * X[:, 0]) + X[:, 1] ** 2, np.cos(2 * X[:, 2])][:, :k]
    Y = Y + 0.05 * rng.standard_normal(Y.shape)
    Xt = rng.random((200, d))
    return X, Y, Xt


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("method, tol", [("dense", None), ("hss", 1e-9),
                                         ("pcg", None)])
def test_kernel_ridge_matches_sklearn(method, tol):
    X, Y, Xt = _data()
    h, lam = 0.7, 1e-2
    ref = skkr.KernelRidge(kernel="rbf", gamma=1 / (2 * h * h), alpha=lam).fit(X, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = KernelRidge(bandwidth=h, alpha=lam, method=method, tol=tol, cg_tol=1e-12,
                          leaf_size=64).fit(X, Y)
    assert est.fit_info_["method"] == method
    assert _rel(est.dual_coef_, ref.dual_coef_) <= 1e-8
    P = est.predict(Xt)
    assert P.shape == (200, 2)
    assert _rel(P, ref.predict(Xt)) <= 1e-8
    assert est.score(Xt, ref.predict(Xt)) == pytest.approx(1.0, abs=1e-10)


def test_kernel_ridge_shapes_follow_sklearn():
    X, Y, Xt = _data(k=1)
    y = Y[:, 0]
    est = KernelRidge(bandwidth=0.7, alpha=1e-2).fit(X, y)
    ref = skkr.KernelRidge(kernel="rbf", gamma=1 / 0.98, alpha=1e-2).fit(X, y)
    assert est.predict(Xt).shape == ref.predict(Xt).shape == (200,)
    assert est.score(X, y) == pytest.approx(ref.score(X, y), rel=1e-8)
    assert est.n_features_in_ == 6
    assert est.get_params()["alpha"] == 1e-2
    assert est.set_params(alpha=0.5).alpha == 0.5


def test_laplace_kernel_matches_a_precomputed_sklearn_fit():
    X, Y, Xt = _data(n=400)
    h = 0.8
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    Dt = np.sqrt(((Xt[:, None] - X[None]) ** 2).sum(-1))
    ref = skkr.KernelRidge(kernel="precomputed", alpha=0.1).fit(np.exp(-D / h), Y)
    est = KernelRidge(kernel="laplace", bandwidth=h, alpha=0.1).fit(X, Y)
    assert _rel(est.predict(Xt), ref.predict(np.exp(-Dt / h))) <= 1e-8


@pytest.mark.parametrize("kwargs, X, y, match", [
    (dict(alpha=0.0), None, None, "'alpha' parameter of KernelRidge"),
    (dict(alpha=-1.0), None, None, "'alpha' parameter of KernelRidge"),
    (dict(kernel="rbf"), None, None, "'kernel' parameter of KernelRidge"),
    (dict(bandwidth=0), None, None, "'bandwidth' parameter of KernelRidge"),
    (dict(method="qr"), None, None, "'method' parameter of KernelRidge"),
    (dict(), None, "nan", "NaN"),
    (dict(), None, "short", "inconsistent numbers of samples"),
])
def test_kernel_ridge_bad_input(kwargs, X, y, match):
    X0, Y0, _ = _data(n=100)
    y = {"nan": np.r_[np.nan, Y0[1:, 0]], "short": Y0[:50]}.get(y, Y0)
    with pytest.raises(ValueError, match=match):
        KernelRidge(**kwargs).fit(X0, y)


def test_kernel_ridge_predict_checks():
    from sklearn.exceptions import NotFittedError
    X, Y, Xt = _data(n=100)
    with pytest.raises(NotFittedError):
        KernelRidge().predict(Xt)
    est = KernelRidge().fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        est.predict(Xt[:, :3])


@pytest.mark.parametrize("method, tol", [("dense", None), ("hss", 1e-9)])
def test_gp_likelihood_and_posterior_match_sklearn(method, tol):
    X, Y, Xt = _data(n=500, k=1)
    y = Y[:, 0]
    h, a, s = 0.6, 1.7, 1e-2
    ref = skgp.GaussianProcessRegressor(ConstantKernel(a) * RBF(h), alpha=s,
                                        optimizer=None).fit(X, y)
    est = GaussianProcessRegressor(bandwidth=h, amplitude=a, noise=s, optimizer=None,
                                   method=method, tol=tol, leaf_size=64).fit(X, y)
    assert est.method_ == method
    assert est.log_marginal_likelihood_value_ == pytest.approx(
        ref.log_marginal_likelihood_value_, rel=1e-8)
    m, sd = est.predict(Xt, return_std=True)
    m0, sd0 = ref.predict(Xt, return_std=True)
    assert _rel(m, m0) <= 1e-8
    assert _rel(sd, sd0) <= 1e-6
    theta = np.log([0.9, 1.0, 0.05])
    ref_lml = ref.log_marginal_likelihood  # at sklearn's theta: (log a, log h)
    kern = ConstantKernel(1.0) * RBF(0.9)
    ref2 = skgp.GaussianProcessRegressor(kern, alpha=0.05, optimizer=None).fit(X, y)
    assert est.log_marginal_likelihood(theta) == pytest.approx(
        ref2.log_marginal_likelihood_value_, rel=1e-8)
    assert callable(ref_lml)


def test_gp_matern_matches_sklearn():
    X, Y, Xt = _data(n=400, k=1)
    ref = skgp.GaussianProcessRegressor(ConstantKernel(1.3) * Matern(0.5, nu=1.5),
                                        alpha=0.02, optimizer=None).fit(X, Y[:, 0])
    est = GaussianProcessRegressor("matern32", 0.5, 1.3, 0.02, optimizer=None).fit(
        X, Y[:, 0])
    assert est.log_marginal_likelihood_value_ == pytest.approx(
        ref.log_marginal_likelihood_value_, rel=1e-8)


def test_gp_fit_raises_the_likelihood_to_sklearns_optimum():
    X, Y, Xt = _data(n=300, k=1)
    y = Y[:, 0]
    ref = skgp.GaussianProcessRegressor(
        ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (1e-3, 1e3)), alpha=1e-2,
        n_restarts_optimizer=0, random_state=0).fit(X, y)
    est = GaussianProcessRegressor(bandwidth=1.0, amplitude=1.0, noise=1e-2,
                                   max_iter=200).fit(X, y)
    start = est.fit_history_[0][3]
    assert est.log_marginal_likelihood_value_ > start
    # the search also fits the noise, so it reaches at least sklearn's optimum
    assert est.log_marginal_likelihood_value_ >= ref.log_marginal_likelihood_value_ - 1e-3 * abs(
        ref.log_marginal_likelihood_value_)


@pytest.mark.parametrize("kwargs, match", [
    (dict(noise=0.0), "'noise' parameter"),
    (dict(amplitude=-1.0), "'amplitude' parameter"),
    (dict(optimizer="lbfgs"), "'optimizer' parameter"),
    (dict(method="pcg"), "no log determinant"),
    (dict(kernel="cubic"), "'kernel' parameter"),
])
def test_gp_bad_input(kwargs, match):
    X, Y, _ = _data(n=50, k=1)
    with pytest.raises(ValueError, match=match):
        GaussianProcessRegressor(**kwargs).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="NaN"):
        GaussianProcessRegressor().fit(X, np.r_[np.nan, Y[1:, 0]])


@pytest.mark.parametrize("est", [KernelRidge(), GaussianProcessRegressor(optimizer=None)],
                         ids=["KernelRidge", "GaussianProcessRegressor"])
def test_sklearn_estimator_checks(est):
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(est)
