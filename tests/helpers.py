"""Comparisons for tests that put two floating-point paths side by side.

Different CPUs pick different BLAS kernels (and summation orders), so an entry
near zero can differ by a few ulps of the *result's* scale, not of its own size.
Bounds are therefore relative to the norm of the expected result.

Also the one set-up several tests share: applying a Newton trainer's preconditioner.
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


def apply_newton_pc(nk, gn, lam, x, curvature=None):
    """Set the preconditioner of the NewtonKrylov ``nk`` up for gn + lam I (built
    from ``curvature``, default gn) and return it applied to ``x``; ``nk`` is
    destroyed afterwards."""
    try:
        nk.ctx.update(gn, lam, "build", curvature)
        nk.ksp.setOperators(nk.A, nk.A)
        pc = nk.ksp.getPC()
        pc.setUp()
        xv, yv = nk.A.createVecs()
        xv.setArray(x)
        pc.apply(xv, yv)
        y = yv.getArray().copy()
        for v in (xv, yv):
            v.destroy()
        return y
    finally:
        nk.destroy()
