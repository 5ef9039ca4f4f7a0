"""The Cython matvec against the numpy reference, threads, shapes, operator."""
import numpy as np
import pytest
from helpers import assert_close
from scipy.sparse.linalg import LinearOperator

import hsspetsc
from hsspetsc.matrix.reference import reference_matvec


@pytest.fixture(scope="module", params=[0.0, 0.08])
def compressed(request, gauss3d):
    return hsspetsc.compress(gauss3d, leaf_size=50, tol=1e-6, budget=request.param)


@pytest.mark.parametrize("k", [1, 2, 7])
def test_kernels_match_numpy_reference(compressed, k):
    W = np.random.default_rng(k).standard_normal((compressed.n, k))
    U = compressed.matvec(W)
    R = reference_matvec(compressed, W)
    assert_close(U, R, rtol=1e-12)


def test_vector_and_block_agree(compressed):
    W = np.random.default_rng(0).standard_normal((compressed.n, 3))
    U = compressed @ W
    for j in range(3):
        assert_close(compressed @ W[:, j], U[:, j], rtol=1e-12)
    assert (compressed @ W[:, 0]).shape == (compressed.n,)


def test_one_and_two_threads_are_bitwise_equal(compressed):
    W = np.random.default_rng(0).standard_normal((compressed.n, 5))
    U1 = compressed.matvec(W, n_threads=1)
    U2 = compressed.matvec(W, n_threads=2)
    assert np.array_equal(U1, U2)          # each node is computed by one thread
    w = W[:, 0].copy()
    assert np.array_equal(compressed.matvec(w, n_threads=1), compressed.matvec(w, n_threads=2))


def test_matvec_is_symmetric(compressed):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, compressed.n))
    assert abs(y @ (compressed @ x) - x @ (compressed @ y)) <= 1e-12 * np.linalg.norm(x) * np.linalg.norm(
        compressed @ y)


def test_linear_operator(compressed):
    op = compressed.as_linear_operator()
    assert isinstance(op, LinearOperator) and op.shape == compressed.shape
    W = np.random.default_rng(0).standard_normal((compressed.n, 2))
    np.testing.assert_array_equal(op @ W, compressed @ W)
    np.testing.assert_array_equal(op.rmatvec(W[:, 0]), compressed @ W[:, 0])


def test_input_is_not_modified_and_int_input_works(compressed):
    W = np.random.default_rng(0).standard_normal(compressed.n)
    W0 = W.copy()
    compressed @ W
    assert np.array_equal(W, W0)
    Wi = np.arange(compressed.n) % 3
    np.testing.assert_allclose(compressed @ Wi, compressed @ Wi.astype(float))


def test_fortran_and_strided_input(compressed):
    W = np.asfortranarray(np.random.default_rng(0).standard_normal((compressed.n, 4)))
    assert_close(compressed @ W, compressed @ np.ascontiguousarray(W), rtol=1e-12)
    assert_close(compressed @ W[:, 1], compressed @ W[:, 1].copy(), rtol=1e-12)
