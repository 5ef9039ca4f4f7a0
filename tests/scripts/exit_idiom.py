"""The petsc4py idiom of issue 14: a PC whose python context is set by hand, the
KSP, Mat and Vecs destroyed, the PC handle still alive at exit. Exits 0."""
import sys

import petsc4py

petsc4py.init(sys.argv)
from petsc4py import PETSc  # noqa: E402

import hsspetsc  # noqa: E402
import hsspetsc.petsc as hp  # noqa: E402

H = hsspetsc.compress(hsspetsc.gallery.testsuite("K02", 1024), leaf_size=64, tol=1e-6)
A = hp.as_petsc_mat(H, shift=1e-3)
ksp = PETSc.KSP().create()
ksp.setOperators(A)
ksp.setType("cg")
pc = ksp.getPC()
pc.setType("python")
pc.setPythonContext(hp.HSSPC())
x, b = A.createVecs()
b.set(1.0)
ksp.solve(b, x)
PETSc.Sys.Print(f"iterations {ksp.getIterationNumber()}, reason {ksp.getConvergedReason()}")
ksp.destroy()
A.destroy()
x.destroy()
b.destroy()
# pc is still referenced here, on purpose
