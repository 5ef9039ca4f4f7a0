"""The preconditioners a user would try instead of HSSPC for the Newton-CG system
(H + lambda I) p = -g, as PETSc python PCs reading the Gauss-Newton operator:

- :class:`HFDiagonalPC`: Martens' Hessian-free choice (2010), M = (diag(H) + lambda)^0.75
  (``-pc_hf_alpha`` changes the exponent);
- :class:`KFACPC`: Kronecker-factored curvature (Martens & Grosse 2015) with factored
  Tikhonov damping, M_l = (G_l + sqrt(lambda)/pi_l I) (x) (A_l + pi_l sqrt(lambda) I).

Both are set up again at every Newton step (the PC is reset when lambda changes), from
the same Gauss-Newton matrix the operator holds (its ``diagonal()`` and, for KFAC, the
stored per-sample factors of every rank, summed over ranks).
"""
import numpy as np
from petsc4py import PETSc

from ..baselines import KFAC
from ..petsc import release_refs
from ..util.blocks import exclusive_cumsum


def _operator_context(pc):
    _, P = pc.getOperators()
    ctx = P.getPythonContext() if P.getType() == PETSc.Mat.Type.PYTHON else None
    if ctx is None or getattr(ctx, "gn", None) is None:
        raise TypeError("this preconditioner needs the Newton trainer's Gauss-Newton "
                        "operator (a python Mat with a GNMatContext)")
    return ctx


class HFDiagonalPC:
    """y = x / (diag(H) + shift)^alpha, alpha = 0.75 (``-pc_hf_alpha``)."""

    def __init__(self):
        self.inv = None
        self.alpha = 0.75

    @release_refs
    def setFromOptions(self, pc):
        alpha = PETSc.Options(pc.getOptionsPrefix()).getReal("pc_hf_alpha", 0.75)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"The 'pc_hf_alpha' option must be a float in the range "
                             f"[0.0, 1.0]. Got {alpha} instead.")
        self.alpha = alpha

    @release_refs
    def setUp(self, pc):
        ctx = _operator_context(pc)
        d = np.asarray(ctx.curvature.diagonal(), dtype=np.float64) + ctx.diag_shift
        if not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise ValueError("HFDiagonalPC: diag(H) + lambda must be positive and finite "
                             f"(min {float(np.min(d)):.3e})")
        self.inv = d ** -self.alpha

    @release_refs
    def apply(self, pc, x, y):
        y.setArray(self.inv * x.getArray(readonly=True))

    def view(self, pc, viewer):
        viewer.printfASCII(f"  Hessian-free diagonal preconditioner (diag(H) + lambda)"
                           f"^{self.alpha}\n")


def kfac_factors(gn):
    """Per layer (A_l, G_l) of the Gauss-Newton matrix ``gn`` (a DistributedGN or a
    GaussNewton): means over the curvature samples of every rank (one reduction; a
    rank without samples contributes zeros)."""
    local = getattr(gn, "local", gn)
    problem = getattr(gn, "problem", None)
    model = gn.model if problem is None else problem.model
    w, L = model.widths, model.n_layers
    shapes = ([(w[l] + 1, w[l] + 1) for l in range(L)]
              + [(w[l + 1], w[l + 1]) for l in range(L)])
    if local is None:
        flat = np.zeros(sum(a * b for a, b in shapes))
    else:
        k = KFAC(local)
        flat = np.concatenate([np.ravel(f) for f in k.A + k.G]) * float(local._m)
    if problem is None:
        flat = flat / float(local._m)
    else:
        flat = problem.comm.sum(flat) / gn.samples      # gn.samples: over all ranks
    mats = [f.reshape(sh) for f, sh in zip(
        np.split(flat, exclusive_cumsum([a * b for a, b in shapes])[1:]), shapes)]
    return list(zip(mats[:L], mats[L:])), model


class KFACPC:
    """Inverse of the damped Kronecker factors, layer by layer:
    y_l = (G_l + sqrt(lam)/pi_l I)^-1 X_l (A_l + pi_l sqrt(lam) I)^-1 with X_l the
    layer's [W | b] block of x and pi_l = sqrt((tr A_l / dim A_l) / (tr G_l / dim G_l))."""

    def __init__(self):
        self.inverses = None
        self.model = None

    @release_refs
    def setUp(self, pc):
        ctx = _operator_context(pc)
        lam = max(float(ctx.diag_shift), 1e-12)
        factors, self.model = kfac_factors(ctx.curvature)
        inv = []
        for A, G in factors:
            ta, tg = np.trace(A) / A.shape[0], np.trace(G) / G.shape[0]
            pi = np.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0
            r = np.sqrt(lam)
            inv.append((np.linalg.inv(A + pi * r * np.eye(A.shape[0])),
                        np.linalg.inv(G + (r / pi) * np.eye(G.shape[0]))))
        self.inverses = inv

    @release_refs
    def apply(self, pc, x, y):
        v = x.getArray(readonly=True)
        out = np.empty_like(v)
        for l, (w0, b0, e0) in enumerate(self.model.layer_slices):
            i_, o_ = self.model.widths[l], self.model.widths[l + 1]
            Ainv, Ginv = self.inverses[l]
            M = np.hstack([v[w0:b0].reshape(o_, i_), v[b0:e0][:, None]])
            R = Ginv @ M @ Ainv
            out[w0:b0] = R[:, :i_].ravel()
            out[b0:e0] = R[:, i_]
        y.setArray(out)

    def view(self, pc, viewer):
        viewer.printfASCII("  KFAC preconditioner (factored Tikhonov damping)\n")
