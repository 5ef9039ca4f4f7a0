"""Solve (shift I + K) x = b with PETSc KSP, K compressed by hsspetsc, everything
chosen from the options database.

The operator is the full compressed matrix (near-field correction included, from
-budget); the preconditioner is HSSPC (its own compression options, -pc_hss_*).

    mpiexec -n 1 python examples/kernel_pcg.py -matrix K02 -N 16384 -ksp_type cg \
        -pc_type python -pc_python_type hsspetsc.petsc.HSSPC -pc_hss_tol 1e-3 \
        -ksp_monitor -ksp_converged_reason -ksp_view

With -distributed the operator is compressed across the ranks (each stores its
subtree; plain HSS, so -budget 0) and HSSPC factors it distributed; Vecs stay in
PETSc's layout:

    mpiexec -n 4 python examples/kernel_pcg.py -matrix gaussian -N 65536 -distributed \
        -ksp_type cg -pc_type python -pc_python_type hsspetsc.petsc.HSSPC -ksp_view

Options of this script:
    -matrix NAME    test-suite name (K02 ... K18, COV) or gaussian/laplace/matern32/imq
                    (kernel on N uniform points in the unit cube, -h bandwidth)
    -N int          order (default 4096)
    -shift float    lambda (default 1e-4 for ||K|| = 1 matrices)
    -tol float      compression tolerance of the operator (default 1e-7)
    -budget float   near-field share of the operator (default 0.01; 0 with -distributed)
    -distributed    compress over the ranks (hsspetsc.compress(..., comm=...))
    -seed int
"""
import sys
import time

import petsc4py

petsc4py.init(sys.argv)
import numpy as np  # noqa: E402
from petsc4py import PETSc  # noqa: E402

import hsspetsc  # noqa: E402
import hsspetsc.petsc as hpetsc  # noqa: E402


def make_source(name, N, h, seed):
    if name.upper() in hsspetsc.gallery.TESTSUITE_NAMES:
        return hsspetsc.gallery.testsuite(name.upper(), N, seed=seed)
    X = np.random.default_rng(seed).random((N, 3))
    return hsspetsc.gallery.kernel_matrix(X, name, bandwidth=h)


OPTIONS = (("matrix", "K02", "test-suite name or gaussian/laplace/matern32/imq"),
           ("N", 4096, "order"), ("shift", 1e-4, "lambda"),
           ("tol", 1e-7, "compression tolerance of the operator"),
           ("budget", 0.01, "near-field share of the operator"), ("seed", 0, "seed"),
           ("h", 0.2, "kernel bandwidth"),
           ("distributed", False, "compress the operator across the ranks"))


def main():
    opts = PETSc.Options()
    if opts.hasName("help"):
        PETSc.Sys.Print("kernel_pcg.py options -----------\n" + "\n".join(
            f"  -{k} <{opts.getString(k, str(d))}>: {t} (default {d})"
            for k, d, t in OPTIONS))
    name = opts.getString("matrix", "K02")
    N = opts.getInt("N", 4096)
    shift = opts.getReal("shift", 1e-4)
    tol = opts.getReal("tol", 1e-7)
    distributed = opts.getBool("distributed", False)
    budget = opts.getReal("budget", 0.0 if distributed else 0.01)
    seed = opts.getInt("seed", 0)
    h = opts.getReal("h", 0.2)
    comm = PETSc.COMM_WORLD

    t = time.perf_counter()
    src = make_source(name, N, h, seed)
    if distributed:
        H = hsspetsc.compress(src, tol=tol, budget=budget, seed=seed,
                              comm=comm.tompi4py())
        s = H.stats()
        PETSc.Sys.Print(f"{name} N={N}: operator compressed across {comm.getSize()} "
                        f"rank(s) in {time.perf_counter() - t:.2f} s, estimated error "
                        f"{s['error_estimate']:.1e}; MB per rank: " + ", ".join(
                            f"{b / 1e6:.1f}" for b in s["per_rank_stored_bytes"]))
    else:
        H = hsspetsc.compress(src, tol=tol, budget=budget, seed=seed)
        t_comp = time.perf_counter() - t
        err = hsspetsc.relative_error(H, src, exact_max_n=0)["eps2"]
        PETSc.Sys.Print(f"{name} N={N}: operator compressed in {t_comp:.2f} s, matvec "
                        f"eps2 = {err:.2e}, near field "
                        f"{100 * H.stats()['near_fraction']:.2f}%")

    A = hpetsc.as_petsc_mat(H, comm=comm, shift=shift, source=src)
    ksp = PETSc.KSP().create(comm=comm)
    b, x = A.createVecs()
    try:
        ksp.setOperators(A)
        ksp.setType(PETSc.KSP.Type.CG)
        ksp.getPC().setType(PETSc.PC.Type.NONE)
        ksp.setTolerances(rtol=1e-8, max_it=5000)
        ksp.setFromOptions()
        # right-hand side b = (shift I + K~) w for a known w: the solve error is exact
        w = b.duplicate()
        w.setRandom(PETSc.Random().create(comm=comm))
        A.mult(w, b)
        t = time.perf_counter()
        ksp.setUp()
        t_setup = time.perf_counter() - t
        t = time.perf_counter()
        ksp.solve(b, x)
        t_solve = time.perf_counter() - t
        reason = ksp.getConvergedReason()
        x.axpy(-1.0, w)
        solve_err = x.norm() / w.norm()
        PETSc.Sys.Print(f"KSP {ksp.getType()} / PC {ksp.getPC().getType()}: "
                        f"{ksp.getIterationNumber()} iterations, reason {reason}, "
                        f"setup {t_setup:.2f} s, solve {t_solve:.2f} s, "
                        f"solve error |x - w|/|w| = {solve_err:.2e}")
        if reason < 0:
            PETSc.Sys.Print("KSP did not converge (negative reason: see -ksp_converged_reason)")
        w.destroy()
    finally:
        ksp.destroy()
        A.destroy()
        b.destroy()
        x.destroy()


if __name__ == "__main__":
    main()
