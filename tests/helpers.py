"""Comparisons for tests that put two floating-point paths side by side.

Different CPUs pick different BLAS kernels (and summation orders), so an entry
near zero can differ by a few ulps of the *result's* scale, not of its own size.
Bounds are therefore relative to the norm of the expected result.
"""
import numpy as np


def assert_close(actual, desired, rtol=1e-12):
    """|actual - desired| <= rtol * max|desired| entrywise (and equal shapes)."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, f"shape {actual.shape} != {desired.shape}"
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=0,
                               atol=rtol * (scale if scale > 0 else 1.0))
