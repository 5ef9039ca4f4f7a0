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


def cg_solve(A, prefix, opts_dict, comm, rtol=1e-10, max_it=1000, keep=False):
    """KSP CG on the PETSc Mat ``A`` with the options ``opts_dict`` (under
    ``prefix``, removed afterwards), b standard normal (seed 3) in user order.
    Returns (iterations, converged reason, x gathered on every rank) and, with
    ``keep``, the KSP too (the caller destroys it)."""
    from petsc4py import PETSc

    import hsspetsc.petsc as hp
    opts = PETSc.Options()
    for k, v in opts_dict.items():
        opts[prefix + k] = v
    ksp = PETSc.KSP().create(comm=comm)
    b, x = A.createVecs()
    try:
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(A)
        ksp.setType("cg")
        ksp.setTolerances(rtol=rtol, max_it=max_it)
        ksp.setFromOptions()
        full_b = np.random.default_rng(3).standard_normal(A.getSize()[0])
        rs, re = b.getOwnershipRange()
        b.setArray(full_b[rs:re])
        ksp.solve(b, x)
        g = hp._vec.Gatherer()
        xf = g.full(x)
        g.destroy()
        out = (ksp.getIterationNumber(), ksp.getConvergedReason(), xf)
        return out + (ksp,) if keep else out
    finally:
        for k in opts_dict:
            opts.delValue(prefix + k)
        if not keep:
            ksp.destroy()
        b.destroy()
        x.destroy()
