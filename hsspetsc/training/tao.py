"""The same Gauss-Newton training through PETSc TAO, driven by the options database:

    -tao_type nls -tao_nls_ksp_type cg -tao_nls_pc_type python
    -tao_nls_pc_python_type hsspetsc.petsc.HSSPC -tao_monitor

TAO evaluates loss and gradient (``problem.loss_grad``) and asks for the Hessian
at each iterate: it gets the Gauss-Newton matrix as a python Mat (matrix-free),
whose context hands HSSPC a compression of its entries (rebuilt every ``rebuild``
Hessian evaluations). TAO's own damping (NLS perturbation) reaches the Mat through
MatShift and so the preconditioner's shift. Always set the PC type: TAO's default
(ILU) cannot work on a python Mat; this function defaults it to HSSPC.
"""
from petsc4py import PETSc

from .newton import GNMatContext


def tao_train(problem, max_it=20, rebuild=5, curvature_samples=256, prefix="",
              monitor=None):
    """Minimize the problem's loss with TAO (type and solvers from the options
    database, defaults: nls, KSP cg, HSSPC). H~ is compressed every ``rebuild``
    Hessian evaluations from a curvature mini-batch of ``curvature_samples`` samples
    (None: all). Returns (theta, records, reason)."""
    model = problem.model
    N = model.n_params
    opts = PETSc.Options()
    defaults = {"tao_type": "nls", "tao_nls_ksp_type": "cg", "tao_nls_pc_type": "python",
                "tao_nls_pc_python_type": "hsspetsc.petsc.HSSPC",
                "tao_nls_pc_hss_auto_shift": "1", "tao_nls_ksp_max_it": "50"}
    for k, v in defaults.items():
        if not opts.hasName(prefix + k):
            opts[prefix + k] = v
    ctx = GNMatContext()
    H = PETSc.Mat().createPython((N, N), ctx, comm=PETSc.COMM_SELF)
    H.setUp()
    x = PETSc.Vec().createSeq(N)
    x.setArray(model.params)
    tao = PETSc.TAO().create(comm=PETSc.COMM_SELF)
    records = []
    count = {"hess": 0}

    def objgrad(tao_, xv, g):
        loss, grad = problem.loss_grad(xv.getArray(readonly=True).copy())
        g.setArray(grad)
        return loss

    def hessian(tao_, xv, Hm, Pm):
        theta = xv.getArray(readonly=True).copy()
        gn = problem.gauss_newton(theta)
        curvature = gn
        if curvature_samples is not None and curvature_samples < problem.n_total:
            curvature = problem.gauss_newton(theta, samples=curvature_samples,
                                             seed=count["hess"])
        # TAO adds its own shift (MatShift)
        ctx.update(gn, 0.0, "build" if count["hess"] % rebuild == 0 else "keep", curvature)
        count["hess"] += 1
        Hm.assemble()

    def mon(tao_):
        it, f, gnorm, *_ = tao_.getSolutionStatus()
        rec = {"optimizer": "tao-" + tao_.getType(), "iteration": int(it),
               "data_passes": problem.passes, "loss": float(f), "grad_norm": float(gnorm),
               "cg_iterations": int(tao_.getKSP().getIterationNumber())
               if tao_.getKSP() is not None else 0}
        records.append(rec)
        if monitor is not None:
            monitor(rec)

    try:
        tao.setOptionsPrefix(prefix)
        tao.setObjectiveGradient(objgrad, None)
        tao.setHessian(hessian, H, H)
        tao.setMaximumIterations(max_it)
        tao.setMonitor(mon)
        tao.setFromOptions()
        # an error on one rank (in a callback or in TAO) is every rank's error
        problem.comm.run(tao.solve, x)
        theta = x.getArray().copy()
        reason = tao.getConvergedReason()
    finally:
        tao.destroy()
        H.destroy()
        x.destroy()
    model.params = theta
    return theta, records, reason
