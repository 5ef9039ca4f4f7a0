import os
import sys
import tempfile

import numpy as np
import pytest

# tests/helpers.py is importable from tests/ and tests/mpi/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Generated test-suite matrices go to a private cache for the test session.
os.environ.setdefault("HSSPETSC_CACHE", tempfile.mkdtemp(prefix="hsspetsc-test-cache-"))

try:  # PETSc tests need init without pytest's arguments
    import petsc4py
    petsc4py.init([])
except ImportError:  # pragma: no cover
    pass

import hsspetsc  # noqa: E402


@pytest.fixture(scope="session")
def k02():
    return hsspetsc.gallery.testsuite("K02", 1024)


@pytest.fixture(scope="session")
def k05():
    return hsspetsc.gallery.testsuite("K05", 1024)


@pytest.fixture(scope="session")
def gauss3d():
    X = np.random.default_rng(1).random((1024, 3))
    return hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.3)


@pytest.fixture(scope="session")
def dense_spd():
    """A small dense SPD matrix with smooth off-diagonal blocks."""
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(300))
    K = np.exp(-np.abs(x[:, None] - x[None, :]) / 0.3) + 1e-2 * np.eye(300)
    return K
