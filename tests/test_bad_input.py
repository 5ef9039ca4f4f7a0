"""Every bad input gets a clear error naming the parameter and the value."""
import numpy as np
import pytest

import hsspetsc


@pytest.fixture(scope="module")
def H(dense_spd):
    return hsspetsc.compress(dense_spd, leaf_size=32, tol=1e-4)


def test_non_square_dense():
    with pytest.raises(ValueError, match="square"):
        hsspetsc.compress(np.ones((5, 4)))


def test_non_symmetric_dense(dense_spd):
    K = dense_spd.copy()
    K[0, 5] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        hsspetsc.compress(K)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_dense(dense_spd, bad):
    K = dense_spd.copy()
    K[3, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        hsspetsc.compress(K)


def test_complex_and_object_dense():
    with pytest.raises(TypeError, match="real numeric"):
        hsspetsc.compress(np.eye(4) * 1j)
    with pytest.raises(TypeError, match="'source'"):
        hsspetsc.compress("K02")


def test_indefinite_sources_are_reported(dense_spd):
    K = dense_spd.copy()
    K[7, 7] = -1.0                       # a negative diagonal: refused at once
    for distance in ("angle", "kernel"):
        with pytest.raises(ValueError, match=r"not positive semi-definite.*K\[7, 7\]"):
            hsspetsc.compress(K, distance=distance)
    K[7, 7] = 0.0                        # a zero diagonal in a nonzero row
    with pytest.raises(ValueError, match="not positive semi-definite"):
        hsspetsc.compress(K, leaf_size=32)
    # two far-apart indices coupled more strongly than their diagonals allow
    A = dense_spd.copy()
    A[0, 299] = A[299, 0] = -2.0
    with pytest.raises(ValueError, match=r"not positive semi-definite.*\^2"):
        hsspetsc.compress(A, leaf_size=32, tol=1e-6)
    # compressible, every leaf block PSD, but an eigenvalue of -0.3 overall
    w, V = np.linalg.eigh(dense_spd)
    A = dense_spd - (w[-1] + 0.3) * np.outer(V[:, -1], V[:, -1])
    with pytest.warns(RuntimeWarning, match="probably not positive semi-definite"):
        H = hsspetsc.compress(A, leaf_size=32, tol=1e-6)
    assert H.stats()["compensation"] >= 0.3
    with pytest.raises(ValueError, match="not positive semi-definite"):
        hsspetsc.compress(K, leaf_size=32)


@pytest.mark.parametrize("kwargs,name", [
    ({"leaf_size": 1}, "leaf_size"), ({"leaf_size": 301}, "leaf_size"),
    ({"leaf_size": 2.5}, "leaf_size"), ({"max_rank": 0}, "max_rank"),
    ({"tol": 0.0}, "tol"), ({"tol": -1e-3}, "tol"), ({"tol": np.nan}, "tol"),
    ({"tol": 1.5}, "tol"), ({"budget": -0.1}, "budget"), ({"budget": 1.2}, "budget"),
    ({"neighbors": -1}, "neighbors"), ({"distance": "cosine"}, "distance"),
    ({"seed": -3}, "seed"), ({"seed": "a"}, "seed")])
def test_impossible_parameters(dense_spd, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"'{name}' parameter of compress") as e:
        hsspetsc.compress(dense_spd, **kwargs)
    assert repr(list(kwargs.values())[0])[:4] in str(e.value) or "nan" in str(e.value)


def test_geometric_without_points(dense_spd):
    with pytest.raises(ValueError, match="no points"):
        hsspetsc.compress(dense_spd, distance="geometric")


def test_wrong_vector_length_and_dtype(H):
    with pytest.raises(ValueError, match="must have 300 rows"):
        H @ np.ones(299)
    with pytest.raises(ValueError, match="dimension"):
        H @ np.ones((300, 2, 2))
    with pytest.raises(TypeError, match="real numeric"):
        H @ (np.ones(300) * 1j)
    with pytest.raises(TypeError, match="real numeric"):
        H @ np.array(["a"] * 300)
    w = np.ones(300)
    w[4] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        H @ w


def test_relative_error_size_mismatch(H, k02):
    with pytest.raises(ValueError, match="N = 300 but the source has N = 1024"):
        hsspetsc.relative_error(H, k02)
    with pytest.raises(ValueError, match="'nrows'"):
        hsspetsc.relative_error(H, np.eye(300), nrows=0)


def test_threads_parameter(H):
    with pytest.raises(ValueError, match="'n_threads'"):
        H.matvec(np.ones(300), n_threads=0)
