"""hsspetsc.solve: (lam I + K) x = y by the dense Cholesky, the HSS direct solve and
CG preconditioned by the HSS factorization, against numpy's solve."""
import sys
import warnings

import numpy as np
import pytest

import hsspetsc
from hsspetsc.sources import DenseSource, KernelSource


def _kernel(n=900, d=20, seed=2):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    X = np.tanh(z @ rng.standard_normal((4, d))) + 0.1 * rng.standard_normal((n, d))
    return KernelSource(X, "gaussian", 2.0)


def _dense(src):
    i = np.arange(src.n)
    return src.entries(i, i)


@pytest.fixture(scope="module")
def system():
    src = _kernel()
    K = _dense(src)
    lam = 1e-2 * np.linalg.norm(K, 2)
    Y = np.random.default_rng(5).standard_normal((src.n, 3))
    X = np.linalg.solve(K + lam * np.eye(src.n), Y)
    return src, K, lam, Y, X


def test_dense_is_exact(system):
    src, K, lam, Y, X = system
    x, info = hsspetsc.solve(src, Y, lam, method="dense")
    assert np.linalg.norm(x - X) <= 1e-10 * np.linalg.norm(X)
    assert info["method"] == "dense" and info["iterations"] == 0
    assert info["residual"] <= 1e-12
    # "auto" picks it for a small system
    x2, info2 = hsspetsc.solve(src, Y, lam)
    assert info2["method"] == "dense" and np.array_equal(x, x2)


@pytest.mark.parametrize("tol", [1e-4, 1e-9])
def test_pcg_reaches_the_requested_residual(system, tol):
    src, K, lam, Y, X = system
    x, info = hsspetsc.solve(src, Y, lam, method="pcg", tol=tol, leaf_size=64)
    A = K + lam * np.eye(src.n)
    res = np.linalg.norm(Y - A @ x, axis=0) / np.linalg.norm(Y, axis=0)
    assert res.max() <= tol
    assert info["residual"] == pytest.approx(res.max(), rel=1e-3, abs=1e-15)
    assert info["converged"] and info["iterations"] >= 1
    # the forward error is at most cond(A) times the residual
    cond = np.linalg.cond(A)
    assert np.linalg.norm(x - X) <= 2 * cond * tol * np.linalg.norm(X)
    assert set(info["times"]) >= {"compress", "factor", "iterations"}


def test_pcg_iterations_follow_the_condition_bound(system):
    src, K, lam, Y, X = system
    c, tol = 0.5, 1e-8
    x, info = hsspetsc.solve(src, Y[:, 0], lam, method="pcg", tol=tol, precond_tol=c,
                             leaf_size=64)
    assert x.shape == (src.n,)
    kappa = (1 + c) / (1 - c)
    bound = np.sqrt(kappa) / 2 * np.log(2 / tol) + 1
    assert info["iterations"] <= bound, (info["iterations"], bound)
    # without the preconditioner CG needs many more on the same system
    A = K + lam * np.eye(src.n)
    _, it_plain, _ = hsspetsc.krylov.pcg(lambda V: A @ V, lambda R: R.copy(),
                                         Y[:, :1], tol, 2000)
    assert it_plain > 2 * info["iterations"]


def test_hss_direct_error_is_bounded_by_the_share(system):
    src, K, lam, Y, X = system
    c = 0.2
    x, info = hsspetsc.solve(src, Y, lam, method="hss", precond_tol=c, leaf_size=64)
    # |x - x*| <= c / (1 - c) |x*| when |K - H~|_2 <= c lam (module docstring)
    err = np.linalg.norm(x - X, axis=0) / np.linalg.norm(X, axis=0)
    assert err.max() <= c / (1 - c)
    A = K + lam * np.eye(src.n)
    rows = np.arange(src.n)
    assert info["residual_rows"] == 256
    full = np.max(np.linalg.norm(Y - A @ x, axis=0) / np.linalg.norm(Y, axis=0))
    assert info["residual"] <= 3 * full and info["residual"] >= full / 3
    assert info["hss_stats"]["shift_error"] is not None
    assert rows.size == src.n


def test_rows_operator_matches_the_formed_one(system):
    src, K, lam, Y, X = system
    x1, i1 = hsspetsc.solve(src, Y, lam, method="pcg", tol=1e-10, leaf_size=64)
    x2, i2 = hsspetsc.solve(src, Y, lam, method="pcg", tol=1e-10, leaf_size=64,
                            memory=1e6)
    assert i1["operator"] == "formed" and i2["operator"] == "rows"
    assert np.linalg.norm(x1 - x2) <= 1e-8 * np.linalg.norm(X)


class _CountingKernel(KernelSource):
    """Counts the entries read (its own ``_block`` keeps the evaluator out)."""
    read = 0

    def _block(self, I, J):
        type(self).read += len(I) * len(J)
        return super()._block(I, J)


def test_formed_operator_is_evaluated_once(system):
    src, K, lam, Y, X = system
    counted = _CountingKernel(src.points, "gaussian", 2.0)
    _CountingKernel.read = 0
    x, info = hsspetsc.solve(counted, Y, lam, method="pcg", tol=1e-10, leaf_size=64)
    assert info["operator"] == "formed"
    # the compression copied its entries from K formed for CG: N^2 reads in all
    assert _CountingKernel.read == src.n ** 2
    assert np.linalg.norm(x - X) <= 1e-7 * np.linalg.norm(X)


def test_pcg_fallback_uses_the_formed_matrix(system, monkeypatch):
    monkeypatch.setattr(sys.modules["hsspetsc.compression.compress"], "WORK_FLOOR", 0.0)
    src, K, lam, Y, X = system
    counted = _CountingKernel(src.points, "gaussian", 2.0)
    _CountingKernel.read = 0
    with pytest.warns(RuntimeWarning, match="dense matrix instead"):
        x, info = hsspetsc.solve(counted, Y, lam * 1e-6, method="pcg", precond_tol=0.01,
                                 leaf_size=64)
    assert info["method"] == "dense" and info["residual_rows"] is None
    assert _CountingKernel.read == src.n ** 2
    Xs = np.linalg.solve(K + lam * 1e-6 * np.eye(src.n), Y)
    assert np.linalg.norm(x - Xs) <= 1e-6 * np.linalg.norm(Xs)
    assert info["residual"] <= 1e-8


def test_dense_source_points_and_trusted(system):
    src, K, lam, Y, X = system
    with pytest.raises(ValueError, match="must have 900 rows"):
        DenseSource(K, points=src.points[:10])
    D = DenseSource(K, points=src.points, trusted=True)
    assert D.A is K and D.points.shape == src.points.shape
    with pytest.raises(ValueError, match="NaN or Inf"):
        bad = K.copy()
        bad[0, 1] = np.nan
        DenseSource(bad, trusted=False)


def test_dense_array_source(system):
    src, K, lam, Y, X = system
    x, info = hsspetsc.solve(K, Y, lam, method="pcg", tol=1e-10, leaf_size=64)
    assert info["operator"] == "array"
    assert np.linalg.norm(x - X) <= 1e-7 * np.linalg.norm(X)


def test_incompressible_falls_back_to_dense(system, monkeypatch):
    monkeypatch.setattr(sys.modules["hsspetsc.compression.compress"], "WORK_FLOOR", 0.0)
    src, K, lam, Y, X = system
    with pytest.warns(RuntimeWarning, match="dense matrix instead"):
        x, info = hsspetsc.solve(src, Y, lam * 1e-6, method="hss", precond_tol=0.01,
                                 leaf_size=64)
    assert info["method"] == "dense"
    Xs = np.linalg.solve(K + lam * 1e-6 * np.eye(src.n), Y)
    assert np.linalg.norm(x - Xs) <= 1e-6 * np.linalg.norm(Xs)
    with pytest.raises(hsspetsc.IncompressibleError):
        hsspetsc.solve(src, Y, lam * 1e-6, method="hss", precond_tol=0.01,
                       leaf_size=64, memory=1e5)


def test_max_iter_miss_is_reported(system):
    src, K, lam, Y, X = system
    with pytest.warns(RuntimeWarning, match="max_iter = 1 iterations"):
        x, info = hsspetsc.solve(src, Y, lam, method="pcg", tol=1e-12, max_iter=1,
                                 precond_tol=30, leaf_size=64)
    assert not info["converged"] and info["iterations"] == 1
    A = K + lam * np.eye(src.n)
    res = np.max(np.linalg.norm(Y - A @ x, axis=0) / np.linalg.norm(Y, axis=0))
    assert info["residual"] == pytest.approx(res, rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(y=np.ones(5)), r"shape \(900,\) or \(900, k\)"),
    (dict(y=np.full(900, np.nan)), "must be finite"),
    (dict(shift=0.0), "'shift' parameter of solve"),
    (dict(shift=-1.0), "'shift' parameter of solve"),
    (dict(tol=2.0), "'tol' parameter of solve"),
    (dict(method="cholesky"), "'method' parameter of solve"),
    (dict(precond_tol=0.0), "'precond_tol' parameter of solve"),
    (dict(max_iter=0), "'max_iter' parameter of solve"),
])
def test_bad_input(system, kwargs, match):
    src, K, lam, Y, X = system
    args = dict(y=Y, shift=lam)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hsspetsc.solve(src, **args)


def test_dense_memory_refused(system):
    src, K, lam, Y, X = system
    with pytest.raises(MemoryError, match="method='hss' or 'pcg'"):
        hsspetsc.solve(src, Y, lam, method="dense", memory=1e5)


def test_not_spd_is_a_clear_error():
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    A = (Q * np.r_[np.ones(299), -50.0]) @ Q.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises((np.linalg.LinAlgError, ValueError), match="positive"):
            hsspetsc.solve(A, np.ones(300), 1.0, method="dense")
