"""newton-hss with H~ from the CG batch's own curvature (``hss_projections``): the
trainer builds it from the right samples, its PC applies (lambda I + H_r)^-1 for the
dense projected matrix of that batch, the options are checked, and the memory
estimate counts its buffers."""
import warnings

import numpy as np
import pytest
from test_projected_gn import _dense_projected

pytest.importorskip("petsc4py")

from hsspetsc.mlp import MLP, GaussNewton  # noqa: E402
from hsspetsc.training import ShardedProblem, Trainer  # noqa: E402
from hsspetsc.training.memory import projected_gauss_newton_bytes  # noqa: E402
from hsspetsc.training.newton import NewtonKrylov, options_for  # noqa: E402


def _problem(n=60, widths=(6, 5, 6), seed=0):
    X = np.random.default_rng(seed).random((n, widths[0]))
    return ShardedProblem(MLP(list(widths), activation="tanh", seed=0), X, X)


def _pc_apply(nk, x):
    pc = nk.ksp.getPC()
    xv, yv = nk.A.createVecs()
    xv.setArray(x)
    pc.apply(xv, yv)
    y = yv.getArray().copy()
    xv.destroy()
    yv.destroy()
    return y


@pytest.mark.parametrize("hss_samples", [0, 200])
def test_hss_from_the_cg_batch_applies_lambda_plus_its_projected_curvature(hss_samples):
    pb = _problem()
    theta = pb.model.params
    nk = NewtonKrylov(pb, precond="hss", lam=1e-2, prefix=f"cgcurv{hss_samples}_",
                      batch_size=40, cg_batch=20, hss_projections=3, cg_max_it=3,
                      hss_samples=hss_samples,
                      compress_params={"tol": 1e-12, "max_rank": None, "neighbors": 8})
    try:
        nk.step(theta)                                  # builds H~ at step 0
        sub = pb.batch_indices(20, 0)                   # the CG batch of step 0
        curv = nk.ctx.curvature
        assert curv.samples == 20 and curv.projections == 3
        X = pb.X[sub]
        J = np.stack([GaussNewton(pb.model, X, X).jvp(e) for e in np.eye(pb.model.n_params)],
                     axis=2)
        D = _dense_projected(pb.model, X, J, sub, 3)
        N = D.shape[0]
        assert np.linalg.norm(curv.entries(np.arange(N), np.arange(N)) - D) \
            <= 1e-12 * np.linalg.norm(D)
        x = np.random.default_rng(1).standard_normal(N)
        y = _pc_apply(nk, x)
        shift = nk.ctx.diag_shift + 1e-10 * np.mean(np.diag(D))
        ref = np.linalg.solve(D + shift * np.eye(N), x)
        assert np.linalg.norm(y - ref) <= 1e-6 * np.linalg.norm(ref)
    finally:
        nk.destroy()


def test_hss_projections_options_are_checked_and_shared_fairly():
    pb = _problem()
    for kw, msg in (({"precond": "kfac", "hss_projections": 2}, "precond='hss'"),
                    ({"precond": "hss", "hss_projections": 0}, "hss_projections"),
                    ({"precond": "hss", "hss_projections": 2, "curvature_samples": 8},
                     "curvature_samples")):
        with pytest.raises(ValueError, match=msg):
            NewtonKrylov(pb, prefix="badproj_", **kw)
    kw = {"curvature_samples": 16, "hss_projections": 2, "lam": 1.0}
    assert options_for(kw, "hss") == {"hss_projections": 2, "lam": 1.0}
    assert options_for(kw, "kfac") == {"curvature_samples": 16, "lam": 1.0}
    assert options_for({"curvature_samples": 16}, "hss") == {"curvature_samples": 16}
    # the trainer hands each method its share of one set of options
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("newton-hss", "newton-kfac"):
            tr = Trainer(_problem(), name, newton=dict(kw, cg_max_it=2),
                         prefix=f"fair_{name.replace('-', '_')}_")
            try:
                assert tr.nk.hss_projections == (2 if name == "newton-hss" else None)
                assert tr.nk.curvature_samples == (None if name == "newton-hss" else 16)
            finally:
                tr.destroy()


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_projected_factor_sizes_are_those_of_the_arrays(loss):
    widths = [12, 9, 5, 7] if loss == "cross_entropy" else [12, 9, 5, 12]
    rng = np.random.default_rng(0)
    X = rng.random((40, 12))
    Y = rng.integers(0, 7, 40) if loss == "cross_entropy" else X
    g = GaussNewton(MLP(widths, activation="tanh", loss=loss, seed=0), X, Y, projections=3)
    g.diagonal()
    fwd, fac, pairs, _, _ = projected_gauss_newton_bytes(widths, loss, 40, 3, copies=False)
    assert pairs == 0
    arrays = [g._R, g._Xbuf, g._Sbuf, g._diag, g._layer, g._pidx, g._qidx]
    assert fac == sum(a.nbytes for a in arrays) + sum(s.nbytes for s in g._S) \
        + sum(x.nbytes for x in g._xs)
    assert fwd == sum(z.nbytes for z in g._zs) + sum(a.nbytes for a in g._acts[1:])
