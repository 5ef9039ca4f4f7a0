"""The work cap: a compression never reads more entries than the dense matrix has
(N^2, above the floor of small problems); it stops with IncompressibleError and
the figures instead, and a compressible matrix is not affected."""
import sys
import warnings

import numpy as np
import pytest

import hsspetsc
from hsspetsc.sources import KernelSource

compress_module = sys.modules["hsspetsc.compression.compress"]


def _images(n, d=300, seed=3):
    """High-dimensional points with a slowly decaying Gaussian-kernel spectrum."""
    rng = np.random.default_rng(seed)
    return KernelSource(rng.random((n, d)), "gaussian", 3.0)


class _Counting:
    """A source that counts every entry it is asked for (the oracle of the cap)."""

    def __init__(self, src):
        self.src, self.n, self.count = src, src.n, 0

    def diagonal(self):
        return self.src.diagonal()

    def entries(self, I, J):
        self.count += len(I) * len(J)
        return self.src.entries(I, J)


@pytest.fixture
def no_floor(monkeypatch):
    monkeypatch.setattr(compress_module, "WORK_FLOOR", 0.0)


def test_tight_tol_on_high_dimensional_kernel_stops_at_n_squared(no_floor):
    src = _Counting(_images(1200))
    n = src.n
    with pytest.raises(hsspetsc.IncompressibleError, match="dense matrix") as e:
        hsspetsc.compress(src, tol=1e-6, leaf_size=64)
    assert src.count <= n * n
    assert e.value.entries_read == src.count and e.value.n == n
    assert e.value.phase in ("skeletons", "blocks")
    assert "shift=lam" in str(e.value) and "method='dense'" in str(e.value)


def test_shift_aware_message_names_tol_not_shift(no_floor):
    src = _Counting(_images(1200))
    with pytest.raises(hsspetsc.IncompressibleError, match="larger tol") as e:
        hsspetsc.compress(src, shift=1e-6, tol=0.1, leaf_size=64)
    assert "shift=lam" not in str(e.value)
    assert src.count <= src.n ** 2


def test_compressible_kernel_is_not_capped(no_floor):
    rng = np.random.default_rng(1)
    src = _Counting(KernelSource(rng.random((4096, 3)), "gaussian", 0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        H = hsspetsc.compress(src, tol=1e-5, leaf_size=64, probes=0)
    assert H.stats()["entries_fraction"] < 0.75
    assert src.count == H.stats()["entries_evaluated"]
    K = src.src.entries(np.arange(4096), np.arange(4096))
    assert np.linalg.norm(H.to_dense() - K) <= 1e-4 * np.linalg.norm(K)


def test_sketch_counts_products_in_the_cap(no_floor):
    src = _images(600)
    with pytest.raises(hsspetsc.IncompressibleError, match="compress_sketch"):
        # 560 products of 600 columns plus the leaf blocks pass N^2
        hsspetsc.compress_sketch(src.entries(np.arange(600), np.arange(600)),
                                 samples=560, leaf_size=300, max_rank=280)


def test_larger_than_dense_is_said():
    # below the floor of the cap; leaves of a quarter: at full rank the couplings
    # store about what K does, plus the bases
    src = _images(400, d=50)
    K = src.entries(np.arange(400), np.arange(400))
    with pytest.warns(RuntimeWarning, match="more than the dense matrix"):
        H = hsspetsc.compress(K, tol=1e-12, leaf_size=100, neighbors=0, probes=0)
    assert H.stats()["stored_bytes"] > H.stats()["dense_bytes"]
    assert np.linalg.norm(H.to_dense() - K) <= 1e-9 * np.linalg.norm(K)
