"""The PCG experiment of the reference talk, through PETSc (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_pcg.py [-N 4096] [-shift 1e-4]

For COV, K02, K13, K15: the operator is shift*I + K~ (K compressed with tol 1e-7,
near-field correction 0% or 1% = budget 0 / 0.01), solved by PETSc KSP CG to a
relative residual of 1e-8 without preconditioner and with HSSPC (HSS of the same
source, budget 0, -pc_hss_tol 1e-5; the operator's own HSSMatrix when its budget is
0). b = (shift I + K~) w for a random w. Reports MATVEC eps (eps2 of K~ against K),
SOLVE eps = |x - w| / |w|, iterations, setup and solve times.
"""
import os
import sys
import time

import petsc4py

petsc4py.init(sys.argv)
import numpy as np  # noqa: E402
from _results import write_results  # noqa: E402
from petsc4py import PETSc  # noqa: E402

import hsspetsc  # noqa: E402
import hsspetsc.petsc as hp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def solve(A, pc_opts, prefix, w_full):
    opts = PETSc.Options()
    for k, v in pc_opts.items():
        opts[prefix + k] = v
    ksp = PETSc.KSP().create(comm=A.getComm())
    b, x = A.createVecs()
    w = b.duplicate()
    try:
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(A)
        ksp.setType("cg")
        ksp.setTolerances(rtol=1e-8, max_it=5000)
        ksp.setFromOptions()
        rs, re = w.getOwnershipRange()
        w.setArray(w_full[rs:re])
        A.mult(w, b)
        t = time.perf_counter()
        ksp.setUp()
        t_setup = time.perf_counter() - t
        t = time.perf_counter()
        ksp.solve(b, x)
        t_solve = time.perf_counter() - t
        x.axpy(-1.0, w)
        return {"iterations": ksp.getIterationNumber(), "reason": int(ksp.getConvergedReason()),
                "solve_eps": x.norm() / w.norm(), "setup_s": t_setup, "solve_s": t_solve}
    finally:
        for k in pc_opts:
            opts.delValue(prefix + k)
        ksp.destroy()
        for v in (b, x, w):
            v.destroy()


def main():
    opts = PETSc.Options()
    N = opts.getInt("N", 4096)
    shift = opts.getReal("shift", 1e-4)
    out = opts.getString("out", os.path.join(HERE, "bench_pcg.json"))
    rows = []
    PETSc.Sys.Print(f"{'matrix':<6} {'N':>6} {'%K':>6} {'PC':>5} {'MATVEC eps':>10} "
                    f"{'SOLVE eps':>10} {'its':>5} {'setup s':>8} {'solve s':>8} "
                    f"{'PC shift+':>9} {'reason':>6}")
    for name in ("COV", "K02", "K13", "K15"):
        src = hsspetsc.gallery.testsuite(name, N)
        w = np.random.default_rng(7).standard_normal(N)
        for budget in (0.0, 0.01):
            H = hsspetsc.compress(src, tol=1e-7, budget=budget)
            eps = hsspetsc.relative_error(H, src, exact_max_n=0)["eps2"]
            A = hp.as_petsc_mat(H, shift=shift, source=src)
            try:
                for pc, pc_opts in (("none", {"pc_type": "none"}),
                                    ("HSS", {"pc_type": "python",
                                             "pc_python_type": "hsspetsc.petsc.HSSPC",
                                             **({} if budget == 0 else {"pc_hss_tol": "1e-5"})})):
                    # When shift I + H~_pc is not SPD (H~ less accurate than the shift),
                    # the PC gets an extra shift (-pc_hss_shift), the smallest that works.
                    extra_shifts = [0.0] if pc == "none" else [0.0, 1e-3, 1e-2, 1e-1, 1.0]
                    for extra in extra_shifts:
                        o = dict(pc_opts)
                        if extra:
                            o["pc_hss_shift"] = str(extra)
                        try:
                            r = solve(A, o, f"b{name}{int(budget * 100)}{pc}{extra:g}_", w)
                            break
                        except hsspetsc.FactorizationError:
                            continue
                    r.update({"matrix": name, "N": N, "budget": budget,
                              "near_percent": 100 * H.stats()["near_fraction"],
                              "pc": pc, "matvec_eps": eps, "shift": shift,
                              "pc_extra_shift": extra})
                    rows.append(r)
                    PETSc.Sys.Print(f"{name:<6} {N:>6} {100 * budget:>5.0f}% {pc:>5} "
                                    f"{eps:>10.1e} {r['solve_eps']:>10.1e} {r['iterations']:>5} "
                                    f"{r['setup_s']:>8.2f} {r['solve_s']:>8.2f} "
                                    f"{extra:>9g} {r['reason']:>6}")
            finally:
                A.destroy()
    if PETSc.COMM_WORLD.getRank() == 0:
        write_results(out, rows)


if __name__ == "__main__":
    main()
