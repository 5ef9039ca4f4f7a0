"""Factorization of shift*I + H~ against dense Cholesky."""
import numpy as np
import pytest
import scipy.linalg as sla
from helpers import assert_close

import hsspetsc


def _dense_solve(K, shift, B):
    return sla.cho_solve(sla.cho_factor(K + shift * np.eye(K.shape[0])), B)


@pytest.mark.parametrize("which", ["k02", "gauss3d"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_solve_error_scales_with_tol(request, which, tol):
    src = request.getfixturevalue(which)
    K = src.to_dense()
    shift = 1e-2 * np.linalg.norm(K, 2)
    H = hsspetsc.compress(src, leaf_size=64, max_rank=1024, tol=tol)
    F = H.factorize(shift=shift)
    B = np.random.default_rng(0).standard_normal((K.shape[0], 3))
    X = F.solve(B)
    # exact inverse of the compressed matrix (budget 0): round-off residual
    Kt = H.to_dense()
    res = np.linalg.norm((Kt + shift * np.eye(K.shape[0])) @ X - B) / np.linalg.norm(B)
    assert res < 1e-12
    # against dense Cholesky of the true matrix: error ~ cond * tol
    Xd = _dense_solve(K, shift, B)
    err = np.linalg.norm(X - Xd) / np.linalg.norm(Xd)
    assert err < 100 * tol * np.linalg.norm(K, 2) / shift
    ld = 2 * np.sum(np.log(np.diag(np.linalg.cholesky(K + shift * np.eye(K.shape[0])))))
    assert abs(F.logdet() - ld) < 100 * tol * K.shape[0]


def test_full_rank_factorization_is_exact(gauss3d):
    K = gauss3d.to_dense()
    H = hsspetsc.compress(gauss3d, leaf_size=64, max_rank=4096, tol=1e-15)
    F = H.factorize(shift=0.5)
    b = np.random.default_rng(1).standard_normal(K.shape[0])
    x = F.solve(b)
    assert_close(x, _dense_solve(K, 0.5, b), rtol=1e-9)


def test_reshift_equals_refactor(k02):
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-6)
    b = np.random.default_rng(2).standard_normal((k02.n, 2))
    F1 = H.factorize(shift=1e-1)
    F2 = H.factorize(shift=1e-3)            # re-shift, layout reused
    H2 = hsspetsc.compress(k02, leaf_size=64, tol=1e-6)
    F3 = H2.factorize(shift=1e-3)           # from scratch
    assert np.array_equal(F2.solve(b), F3.solve(b))
    assert F2.logdet() == F3.logdet()
    assert not np.allclose(F1.solve(b), F2.solve(b))


def test_reshift_evaluates_no_entries(k02):
    calls = []
    src = hsspetsc.EntrySource(k02.n, lambda I, J: (calls.append(1), k02.entries(I, J))[1],
                               k02.diagonal())
    H = hsspetsc.compress(src, leaf_size=64, tol=1e-5)
    n_calls = len(calls)
    for shift in (1.0, 1e-2, 1e-4):
        H.factorize(shift=shift).solve(np.ones(k02.n))
    assert len(calls) == n_calls


@pytest.mark.parametrize("k", [1, 4])      # loops (few right-hand sides), BLAS
def test_threads_bitwise_equal(gauss3d, k):
    H = hsspetsc.compress(gauss3d, leaf_size=50, tol=1e-6)
    B = np.random.default_rng(0).standard_normal((gauss3d.n, k))
    F1 = H.factorize(shift=0.1, n_threads=1)
    F2 = H.factorize(shift=0.1, n_threads=2)
    assert np.array_equal(F1.solve(B, n_threads=1), F2.solve(B, n_threads=2))


def test_vector_and_block_solve_agree(gauss3d):
    H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-6)
    F = H.factorize(shift=0.1)
    B = np.random.default_rng(0).standard_normal((gauss3d.n, 3))
    X = F.solve(B)
    for j in range(3):
        assert_close(F.solve(B[:, j]), X[:, j], rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_few_right_hand_sides_solve_the_compressed_matrix(k02, k):
    """Up to two right-hand sides the nodes' products and substitutions are loops,
    from three on BLAS: both solve shift I + H~ to round-off."""
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-6)
    shift = 1e-3 * H.max_diagonal()
    F = H.factorize(shift=shift)
    B = np.random.default_rng(2).standard_normal((H.n, k))
    X = F.solve(B)
    A = H.to_dense() + shift * np.eye(H.n)
    res = np.linalg.norm(A @ X - B) / (np.linalg.norm(A, 2) * np.linalg.norm(X))
    assert res < 1e-13


def test_negative_shift_is_refused_and_failures_name_node_and_shift(k02):
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-6)
    with pytest.raises(ValueError, match=r"'shift' parameter of factorize.*-0\.5"):
        H.factorize(shift=-0.5)
    # without the compensation a truncated H~ can be indefinite: the error names
    # the node and the shift
    X = np.random.default_rng(0).standard_normal((1024, 3))
    src = hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=1.0)
    with pytest.warns(RuntimeWarning):
        H = hsspetsc.compress(src, leaf_size=64, max_rank=8, tol=1e-8, spd=False)
    with pytest.raises(hsspetsc.FactorizationError, match=r"shift = 0\b") as e:
        H.factorize(shift=0.0)
    assert e.value.shift == 0.0 and e.value.node >= 0
    assert "node" in str(e.value) or "root" in str(e.value)


def test_solve_bad_input(k02):
    F = hsspetsc.compress(k02, leaf_size=64, tol=1e-4).factorize(shift=0.1)
    with pytest.raises(ValueError, match="must have 1024 rows"):
        F.solve(np.ones(5))
    with pytest.raises(ValueError, match="NaN or Inf"):
        F.solve(np.full(1024, np.nan))
    with pytest.raises(TypeError, match="'shift'"):
        hsspetsc.compress(k02, leaf_size=64).factorize(shift="big")


def test_single_leaf(dense_spd):
    K = dense_spd[:40, :40]
    F = hsspetsc.compress(K, leaf_size=40).factorize(shift=0.3)
    b = np.arange(40.0)
    assert_close(F.solve(b), _dense_solve(K, 0.3, b), rtol=1e-11)
