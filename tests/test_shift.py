"""Shift-aware accuracy: with ``shift=lam``, tol is the share c of lam and
|K - H~|_2 <= c lam, so lam I + H~ preconditions lam I + K with condition number at
most (1 + c) / (1 - c). Checked against the dense matrix on kernels of low- and
high-dimensional points, both construction paths."""
import warnings

import numpy as np
import pytest

import hsspetsc
from hsspetsc.sources import DenseSource, KernelSource


def _points(kind, n=1536):
    rng = np.random.default_rng(7)
    if kind == "gauss3d":
        return KernelSource(rng.random((n, 3)), "gaussian", 0.3)
    if kind == "gauss8d":
        return KernelSource(rng.standard_normal((n, 8)), "gaussian", 2.0)
    if kind == "laplace6d":
        return KernelSource(rng.random((n, 6)), "laplace", 0.5)
    # images-like: 200-D points on a low-dimensional manifold plus noise
    z = rng.standard_normal((n, 5))
    X = np.tanh(z @ rng.standard_normal((5, 200))) + 0.05 * rng.standard_normal((n, 200))
    return KernelSource(X, "gaussian", 4.0)


def _dense(src):
    i = np.arange(src.n)
    return src.entries(i, i)


def _spread(K, H, lam):
    """(|K - H~|_2 / lam, condition number of (lam I + H~)^-1 (lam I + K))."""
    Hd = H @ np.eye(H.n)
    err = np.linalg.norm(K - Hd, 2) / lam
    A = K + lam * np.eye(K.shape[0])
    B = 0.5 * (Hd + Hd.T) + lam * np.eye(K.shape[0])
    L = np.linalg.cholesky(B)
    Li = np.linalg.inv(L)
    ev = np.linalg.eigvalsh(Li @ A @ Li.T)
    return err, ev[-1] / ev[0]


@pytest.mark.parametrize("kind", ["gauss3d", "gauss8d", "laplace6d", "manifold200d"])
@pytest.mark.parametrize("c", [0.2, 0.5])
def test_shift_aware_error_is_a_share_of_the_shift(kind, c):
    src = _points(kind)
    K = _dense(src)
    lam = 1e-2 * np.linalg.norm(K, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        H = hsspetsc.compress(src, shift=lam, tol=c, leaf_size=96)
    err, cond = _spread(K, H, lam)
    assert err <= c
    assert cond <= (1 + c) / (1 - c)
    st = H.stats()
    assert H.params["shift"] == lam and H.params["tol"] == c
    # the estimate errs high (documented), never far low
    assert st["shift_error"] >= 0.5 * err


def test_shift_aware_is_cheaper_than_relative_tol_at_the_same_solve_accuracy():
    src = _points("manifold200d")
    K = _dense(src)
    lam = 1e-2 * np.linalg.norm(K, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        Hs = hsspetsc.compress(src, shift=lam, tol=0.5, leaf_size=96)
        # a relative tol small enough for the same |E|_2 / lam
        Hr = hsspetsc.compress(src, tol=1e-4, leaf_size=96)
    assert _spread(K, Hr, lam)[0] <= 0.5
    assert Hs.stats()["stored_bytes"] < Hr.stats()["stored_bytes"]


def test_default_tol_with_a_shift_and_the_solve_bound():
    src = _points("gauss8d", 1024)
    K = _dense(src)
    lam = 1e-2 * np.linalg.norm(K, 2)
    H = hsspetsc.compress(src, shift=lam)
    assert H.params["tol"] == 0.5
    y = np.random.default_rng(0).standard_normal(K.shape[0])
    x = H.factorize(lam).solve(y)
    A = K + lam * np.eye(K.shape[0])
    x_ref = np.linalg.solve(A, y)
    d = x - x_ref
    # the direct solve is off by at most c / (1 - c) = 1 in the A-norm
    assert np.sqrt(d @ A @ d) <= 1.0 * np.sqrt(x_ref @ A @ x_ref)


def test_shift_aware_sketch_path():
    src = _points("gauss8d", 1024)
    K = _dense(src)
    lam = 1e-2 * np.linalg.norm(K, 2)
    dsrc = DenseSource(K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        H = hsspetsc.compress_sketch(dsrc, samples=512, shift=lam, tol=0.5, order="angle")
    err, cond = _spread(K, H, lam)
    assert err <= 0.5 and cond <= 3.0
    assert H.stats()["shift_error"] >= 0.5 * err


def test_shift_survives_save_load_and_refresh(tmp_path):
    src = _points("gauss8d", 1024)
    lam = 0.05
    H = hsspetsc.compress(src, shift=lam)
    path = hsspetsc.matrix.io.save(H, tmp_path / "h")
    H2 = hsspetsc.load(path)
    assert H2.params["shift"] == lam
    H3 = hsspetsc.refresh(H, src)
    assert H3.params["shift"] == lam
    x = np.random.default_rng(1).standard_normal(H.n)
    np.testing.assert_array_equal(H3 @ x, H @ x)
    assert H3.stats()["shift_error"] == pytest.approx(H.stats()["shift_error"])


@pytest.mark.parametrize("kw, match", [
    ({"shift": 0.0}, "shift"), ({"shift": -1.0}, "shift"), ({"shift": np.nan}, "shift"),
    ({"shift": np.inf}, "shift"), ({"shift": 1.0, "tol": 101.0}, "tol"),
    ({"shift": 1.0, "tol": 0.0}, "tol"), ({"tol": 2.0}, "tol")])
def test_bad_shift_parameters_are_clear_errors(kw, match):
    src = _points("gauss3d", 256)
    with pytest.raises(ValueError, match=match):
        hsspetsc.compress(src, **kw)
    with pytest.raises(ValueError, match=match):
        hsspetsc.compress_sketch(DenseSource(_dense(src)), samples=64, **kw)
