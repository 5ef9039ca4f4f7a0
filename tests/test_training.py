"""Newton-Krylov training, the driver, checkpoints and the command line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("petsc4py")

from hsspetsc.mlp import MLP, load  # noqa: E402
from hsspetsc.training import ShardedProblem, Trainer, run  # noqa: E402
from hsspetsc.training.newton import NewtonKrylov  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_newton_solves_linear_least_squares_in_one_step():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6))
    Y = X @ rng.standard_normal((6, 3)) + 0.1 * rng.standard_normal((80, 3))
    model = MLP([6, 3], output="identity", loss="mse", seed=1)
    pb = ShardedProblem(model, X, Y)
    nk = NewtonKrylov(pb, precond="none", lam=1e-12, forcing=1e-13, cg_max_it=500,
                      prefix="lsq_")
    try:
        theta, rec = nk.step(model.params)
    finally:
        nk.destroy()
    A = np.hstack([X, np.ones((80, 1))])
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    best = 0.5 * np.sum((A @ coef - Y) ** 2) / 80
    model.params = theta
    assert rec["step"] == 1.0
    assert model.loss(X, Y) == pytest.approx(best, rel=1e-9)
    _, g = model.loss_grad(X, Y)
    assert np.linalg.norm(g) < 1e-8


@pytest.mark.parametrize("hss_samples", [0, 700])
def test_hss_preconditioner_cuts_cg_iterations(hss_samples):
    # 0: H~ from entries (compress); 700: from products (compress_sketch)
    X, _ = load("digits", 300)
    its = {}
    for pre in ("none", "hss"):
        model = MLP([64, 8, 64], activation="tanh", seed=0)
        pb = ShardedProblem(model, X, X)
        nk = NewtonKrylov(pb, precond=pre, lam=1e-3, forcing=1e-6, cg_max_it=1000,
                          prefix=f"pcit_{pre}_{hss_samples}_", curvature_samples=None,
                          compress_params={"tol": 1e-6, "max_rank": 512, "neighbors": 32},
                          hss_samples=hss_samples)
        try:
            _, rec = nk.step(model.params)
            if pre == "hss":
                assert ("products" in nk.ctx.hss_how) == (hss_samples > 0)
        finally:
            nk.destroy()
        its[pre] = rec["cg_iterations"]
    assert its["hss"] < its["none"] / 3, its


def _trainer(opt, seed=0, newton=None, **kw):
    X, _ = load("digits", 200)
    model = MLP([64, 6, 64], activation="tanh", seed=seed)
    nw = {"curvature_samples": 64, "rebuild": 2}
    nw.update(newton or {})
    return Trainer(ShardedProblem(model, X, X), opt, lr=1e-2, seed=seed, newton=nw, **kw)


@pytest.mark.parametrize("opt,batch,newton", [
    ("newton-hss", None, {}), ("adam", 50, {}), ("lbfgs", None, {}),
    ("newton-hss", None, {"refresh": True, "rebuild": 4}),        # refreshed H~
    ("newton-hss", None, {"rebuild": 50, "rebuild_lost_its": 1}),   # the rule
    # Hessian-free practice: mini-batches (growing), CG sub-batch, warm start,
    # backtracking -- the previous direction and the schedule survive the resume
    ("newton-cg", 60, {"batch_growth": 1.2, "cg_batch": 20, "cg_warm_start": 0.95,
                       "cg_backtrack": True}),
    ("newton-hss", 80, {"cg_batch": 30, "cg_warm_start": 0.9})])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, opt, batch, newton):
    ck = str(tmp_path / "ck.pkl")
    a = _trainer(opt, batch_size=batch, newton=newton)
    try:
        run(a, max_steps=6, printer=None)
    finally:
        a.destroy()
    b = _trainer(opt, batch_size=batch, newton=newton)
    try:
        run(b, max_steps=3, checkpoint=ck, printer=None)
    finally:
        b.destroy()
    c = _trainer(opt, batch_size=batch, newton=newton)
    try:
        c.load(ck)
        assert c.step_count == 3
        run(c, max_steps=6, printer=None)
    finally:
        c.destroy()
    assert np.array_equal(a.theta, c.theta)
    for key in ("loss", "data_passes", "cg_iterations", "hss_action", "batch_size",
                "cg_iterate"):
        assert [r.get(key) for r in a.records] == [r.get(key) for r in c.records], key


@pytest.mark.parametrize("opt,batch", [("adam", 40), ("newton-cg", 100)])
def test_eval_every_thins_the_full_loss_not_the_trajectory(opt, batch):
    X, _ = load("digits", 200)
    Xv, _ = load("digits", 260)
    runs = {}
    for every in (0.0, 1e9, 0.004):
        t = _trainer(opt, batch_size=batch, eval_every=every, validation=(Xv[200:],) * 2)
        try:
            runs[every] = run(t, max_steps=12, printer=None)
        finally:
            t.destroy()
    full = runs[0.0]
    assert all(r["loss"] is not None for r in full)
    for every, recs in runs.items():
        # the same steps whatever is evaluated
        assert [r["loss_step"] for r in recs[:-1]] == [r["loss_step"] for r in full[:-1]]
        assert recs[-1]["loss"] == full[-1]["loss"]       # the final state: always
        last = -np.inf
        for r, ref in zip(recs[:-1], full[:-1]):
            due = r["time"] - last >= every
            assert (r["loss"] is not None) == due, (every, r["iteration"])
            if due:
                last = r["time"]
                assert r["loss"] == ref["loss"] and r["val_loss"] == ref["val_loss"]
            else:
                assert "val_loss" not in r
    assert [r["loss"] is None for r in runs[1e9][:-1]] == [False] + [True] * 11


def test_eval_every_must_be_a_nonnegative_number():
    with pytest.raises(ValueError, match="'eval_every' parameter"):
        _trainer("adam", eval_every=-1.0)


def test_nan_step_stops_and_keeps_parameters(tmp_path):
    log = str(tmp_path / "log.json")
    t = _trainer("sgd")
    t.opt.lr = 1e30
    good = t.theta.copy()
    with pytest.raises(FloatingPointError, match="NaN/Inf"):
        run(t, max_steps=5, log=log, printer=None)
    t.destroy()
    assert np.all(np.isfinite(t.theta))
    recs = json.load(open(log))
    assert len(recs) == t.step_count        # the steps that completed, nothing more
    if t.step_count == 0:
        assert np.array_equal(t.theta, good)


def test_records_have_the_documented_fields(tmp_path):
    t = _trainer("newton-cg")
    try:
        recs = run(t, max_steps=2, log=str(tmp_path / "l.json"), printer=None)
    finally:
        t.destroy()
    for r in recs:
        for k in ("optimizer", "iteration", "data_passes", "time", "loss", "grad_norm",
                  "cg_iterations"):
            assert k in r
    assert len(recs) == 3 and recs[-1]["final"]
    assert recs[2]["loss"] < recs[1]["loss"] < recs[0]["loss"]
    assert recs[2]["data_passes"] > recs[1]["data_passes"] > recs[0]["data_passes"] == 0


def test_cli_compare_writes_log_and_plot(tmp_path):
    log, png = str(tmp_path / "run.json"), str(tmp_path / "run.png")
    p = subprocess.run([sys.executable, "-m", "hsspetsc", "train", "--data", "digits", "--n",
                        "200", "--layers", "64,6,64", "--compare", "newton-hss,adam",
                        "--steps", "3", "--curvature-samples", "64", "--log", log, "--plot", png,
                        "-pc_hss_leaf_size", "64"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert p.returncode == 0, p.stdout + p.stderr
    recs = json.load(open(log))
    assert [r["optimizer"] for r in recs] == ["newton-hss"] * 4 + ["adam"] * 4
    assert os.path.getsize(png) > 10000
    assert "final loss" in p.stdout and "newton-hss" in p.stdout


def test_tao_nls_with_hsspc_from_the_options_database():
    from petsc4py import PETSc

    from hsspetsc.training.tao import tao_train
    X, _ = load("digits", 200)
    model = MLP([64, 6, 64], activation="tanh", seed=0)
    pb = ShardedProblem(model, X, X)
    l0 = pb.loss(model.params)
    opts = PETSc.Options()
    opts["tt_tao_nls_pc_hss_leaf_size"] = "64"      # read through the PC's prefix
    try:
        theta, recs, reason = tao_train(pb, max_it=5, prefix="tt_", curvature_samples=64)
    finally:
        opts.delValue("tt_tao_nls_pc_hss_leaf_size")
    assert recs[0]["optimizer"] == "tao-nls"
    assert pb.loss(theta) < 0.5 * l0
    assert all(b["loss"] <= a["loss"] for a, b in zip(recs, recs[1:]))


def test_interrupted_run_leaves_a_valid_log(tmp_path):
    log = str(tmp_path / "log.json")
    t = _trainer("adam")
    real_step = t.step

    def step_then_interrupt():
        if t.step_count == 3:
            raise KeyboardInterrupt
        return real_step()

    t.step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        run(t, max_steps=10, log=log, printer=None)
    t.destroy()
    recs = json.load(open(log))                 # valid JSON, the 3 completed steps
    assert [r["iteration"] for r in recs] == [0, 1, 2]


@pytest.mark.parametrize("hss_samples", [0, 400])
def test_shift_aware_preconditioner_is_accurate_against_lambda(hss_samples):
    # newton-hss with hss_shift_aware=c: H~ built for the step's lambda, so that
    # |H - H~|_2 is about c lambda (not c |H|), whatever |H| is; the compression
    # warns above 10 c lambda, the bound here
    from hsspetsc.mlp import GaussNewton
    X, _ = load("digits", 300)
    model = MLP([64, 6, 64], activation="tanh", seed=0)
    pb = ShardedProblem(model, X, X)
    G = GaussNewton(model, X, X).to_dense(max_n=10 ** 4)
    lam = 1e-3 * np.linalg.norm(G, 2)
    c = 0.5
    nk = NewtonKrylov(pb, precond="hss", lam=lam, curvature_samples=None,
                      hss_samples=hss_samples, hss_shift_aware=c, cg_max_it=5,
                      prefix=f"shaware_{hss_samples}_")
    try:
        nk.step(model.params)
        H = nk.ctx.hss_built
    finally:
        nk.destroy()
    assert H.stats()["params"]["shift"] == lam
    err = np.linalg.norm(G - H.to_dense(max_n=10 ** 4), 2)
    assert err <= 10 * c * lam, (err / lam)
    # the plain default (tol 1e-2 relative to |H|) allows far more against lambda
    assert 1e-2 * np.linalg.norm(G, 2) > 10 * c * lam
