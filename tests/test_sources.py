import numpy as np
import pytest
import scipy.sparse as sp
from helpers import assert_close
from threadpoolctl import threadpool_limits

import hsspetsc
from hsspetsc.gallery import testsuite as make_suite


def _dense_kernel(X, kernel, h):
    r2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    r = np.sqrt(r2)
    if kernel == "gaussian":
        return np.exp(-r2 / (2 * h * h))
    if kernel == "laplace":
        return np.exp(-r / h)
    if kernel == "matern32":
        a = np.sqrt(3) * r / h
        return (1 + a) * np.exp(-a)
    if kernel == "imq":
        return 1 / np.sqrt(r2 + h * h)
    if kernel == "polynomial":
        return (X @ X.T + h) ** 2
    raise AssertionError


@pytest.mark.parametrize("kernel", hsspetsc.gallery.KERNELS)
def test_kernel_entries_match_numpy(kernel):
    X = np.random.default_rng(0).standard_normal((60, 3))
    src = hsspetsc.gallery.kernel_matrix(X, kernel, bandwidth=0.7, shift=0.25)
    ref = _dense_kernel(X, kernel, 0.7) + 0.25 * np.eye(60)
    I = np.array([5, 0, 59, 7])
    J = np.array([7, 3, 59, 0, 5])
    assert_close(src.entries(I, J), ref[np.ix_(I, J)], rtol=1e-12)
    assert_close(src.diagonal(), np.diag(ref), rtol=1e-12)
    assert_close(src.to_dense(), ref, rtol=1e-12)


def test_kernel_entries_same_for_1_and_2_threads():
    X = np.random.default_rng(0).standard_normal((500, 6))
    a = hsspetsc.gallery.kernel_matrix(X, "gaussian", n_threads=1).to_dense()
    b = hsspetsc.gallery.kernel_matrix(X, "gaussian", n_threads=2).to_dense()
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kernel", hsspetsc.gallery.KERNELS)
def test_symmetric_gram_path_matches_numpy(kernel, monkeypatch):
    # many coordinates: to_dense takes the lower-triangle GEMM path; small tiles so
    # that off-diagonal, diagonal and ragged tiles all occur
    monkeypatch.setattr(hsspetsc.sources, "GRAM_TILE", 70)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 24)) / 3
    X[11] = X[150] + 1e-9                  # a near duplicate: the exact loop
    src = hsspetsc.gallery.kernel_matrix(X, kernel, bandwidth=2.0, shift=0.25)
    ref = _dense_kernel(X, kernel, 2.0) + 0.25 * np.eye(200)
    K = src.to_dense()
    assert np.array_equal(K, K.T)
    assert_close(K, ref, rtol=1e-12)
    i = np.arange(200)
    assert_close(K, src.entries(i, i), rtol=1e-11)    # GEMM tiles against entries


def test_symmetric_gram_path_same_for_1_and_2_threads():
    X = np.random.default_rng(0).standard_normal((3000, 30))
    with threadpool_limits(1):
        a = hsspetsc.gallery.kernel_matrix(X, "gaussian", n_threads=1).to_dense()
    b = hsspetsc.gallery.kernel_matrix(X, "gaussian", n_threads=2).to_dense()
    assert np.array_equal(a, b)


def test_entry_source_callback_and_checks(dense_spd):
    K = dense_spd
    src = hsspetsc.EntrySource(K.shape[0], lambda I, J: K[np.ix_(I, J)], np.diag(K))
    np.testing.assert_array_equal(src.entries([1, 2], [3]), K[[1, 2]][:, [3]])
    bad = hsspetsc.EntrySource(K.shape[0], lambda I, J: np.zeros((1, 1)), np.diag(K))
    with pytest.raises(ValueError, match="returned shape"):
        bad.entries([1, 2], [3])
    with pytest.raises(ValueError, match="'diagonal'"):
        hsspetsc.EntrySource(5, lambda I, J: 0, np.ones(4))
    with pytest.raises(TypeError, match="'entries'"):
        hsspetsc.EntrySource(5, "nope", np.ones(5))
    with pytest.raises(ValueError, match="indices in"):
        src.entries([K.shape[0]], [0])


def _poisson(n):
    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])
    I = sp.identity(n)
    return (sp.kron(T, I) + sp.kron(I, T)).toarray() / n ** 2


def test_k02_is_scaled_inverse_squared_poisson():
    n = 12
    A = _poisson(n)
    ref = np.linalg.inv(A @ A)
    ref /= np.linalg.norm(ref, 2)
    K = make_suite("K02", n * n, cache=False).to_dense()
    np.testing.assert_allclose(K, ref, rtol=1e-9, atol=1e-12)


def test_k03_is_scaled_inverse_squared_helmholtz():
    n = 12
    L = _poisson(n) * n ** 4          # mesh width 1/n
    omega = 2 * np.pi * n / 10
    M = omega ** 2 * np.eye(n * n) - L
    ref = np.linalg.inv(M @ M)
    ref /= np.linalg.norm(ref, 2)
    K = make_suite("K03", n * n, cache=False).to_dense()
    np.testing.assert_allclose(K, ref, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name,N", [("K02", 256), ("K03", 256), ("K04", 300), ("K05", 300),
                                    ("K06", 300), ("K07", 300), ("K08", 300), ("K09", 300),
                                    ("K10", 300), ("K12", 256), ("K13", 256), ("K14", 256),
                                    ("K15", 256), ("K17", 216), ("K18", 216), ("COV", 256)])
def test_testsuite_members_are_spd_with_unit_norm(name, N):
    K = make_suite(name, N).to_dense()
    assert K.shape == (N, N)
    np.testing.assert_allclose(K, K.T, atol=1e-12)
    ev = np.linalg.eigvalsh(K)
    assert abs(ev[-1] - 1.0) < 1e-6
    assert ev[0] > -1e-10


def test_kernel_members_have_diagonally_dominant_diagonal():
    src = make_suite("K05", 300)
    K = src.to_dense()
    off = K - np.diag(np.diag(K))
    assert_close(np.diag(K), 2 * off.sum(1), rtol=1e-12)


def test_testsuite_cache_roundtrip():
    a = make_suite("K12", 256).to_dense()
    b = make_suite("K12", 256).to_dense()          # from the cache
    c = make_suite("K12", 256, cache=False).to_dense()
    assert np.array_equal(a, b)
    assert_close(a, c, rtol=1e-12)


def test_testsuite_bad_input():
    with pytest.raises(ValueError, match="'name'"):
        make_suite("K99", 256)
    with pytest.raises(ValueError, match="perfect square"):
        make_suite("K02", 250)
    with pytest.raises(ValueError, match="perfect cube"):
        make_suite("K18", 250)
    with pytest.raises(ValueError, match="max_dense"):
        make_suite("K02", 40000, max_dense=16384)


def test_kernel_matrix_bad_input():
    X = np.random.default_rng(0).random((10, 2))
    with pytest.raises(ValueError, match="'kernel'"):
        hsspetsc.gallery.kernel_matrix(X, "cauchy")
    with pytest.raises(ValueError, match="'bandwidth'"):
        hsspetsc.gallery.kernel_matrix(X, bandwidth=0.0)
    with pytest.raises(ValueError, match="'shift'"):
        hsspetsc.gallery.kernel_matrix(X, shift=-1.0)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        hsspetsc.gallery.kernel_matrix(Xn)
    with pytest.raises(ValueError, match="dimension"):
        hsspetsc.gallery.kernel_matrix(np.ones(5))
