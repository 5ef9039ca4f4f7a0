"""The Newton-CG preconditioners beside HSSPC (Martens' diagonal, KFAC), the time
budget inside CG, --epochs and the per-step time split."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("petsc4py")


from helpers import apply_newton_pc  # noqa: E402

from hsspetsc.baselines import KFAC  # noqa: E402
from hsspetsc.mlp import MLP, load  # noqa: E402
from hsspetsc.training import ShardedProblem, Trainer, run  # noqa: E402
from hsspetsc.training.newton import NewtonKrylov  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 5))
    model = MLP([5, 3, 4], activation="tanh", seed=2)
    return ShardedProblem(model, X, rng.standard_normal((40, 4)))


def _pc_apply(pb, precond, lam, x):
    """Set the trainer's PC up on the Gauss-Newton matrix at the initial parameters
    with damping lam, and apply it to x."""
    nk = NewtonKrylov(pb, precond=precond, prefix=f"pctest_{precond}_", curvature_samples=None)
    gn = pb.gauss_newton(pb.model.params)
    return gn, apply_newton_pc(nk, gn, lam, x)


@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_hf_diagonal_preconditioner_against_the_dense_diagonal(lam):
    pb = _tiny()
    x = np.random.default_rng(0).standard_normal(pb.model.n_params)
    gn, y = _pc_apply(pb, "hf", lam, x)
    H = gn.matmat(np.eye(gn.n))                       # the dense reference
    expect = x / (np.diag(H) + lam) ** 0.75
    np.testing.assert_allclose(y, expect, rtol=1e-10, atol=1e-12 * np.abs(expect).max())


@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_kfac_preconditioner_inverts_the_damped_kronecker_factors(lam):
    pb = _tiny()
    model = pb.model
    x = np.random.default_rng(1).standard_normal(model.n_params)
    gn, y = _pc_apply(pb, "kfac", lam, x)
    k = KFAC(gn.local)
    # the damped factors, built here independently of the PC, applied densely
    M = np.zeros((model.n_params, model.n_params))
    for l, (w0, b0, e0) in enumerate(model.layer_slices):
        A, G = k.A[l], k.G[l]
        pi = np.sqrt((np.trace(A) / A.shape[0]) / (np.trace(G) / G.shape[0]))
        Ad = A + pi * np.sqrt(lam) * np.eye(A.shape[0])
        Gd = G + np.sqrt(lam) / pi * np.eye(G.shape[0])
        i_, o_ = model.widths[l], model.widths[l + 1]
        # parameter index of entry (p, q) of [W | b]
        idx = np.empty((o_, i_ + 1), np.int64)
        idx[:, :i_] = w0 + np.arange(o_ * i_).reshape(o_, i_)
        idx[:, i_] = b0 + np.arange(o_)
        K = np.kron(Gd, Ad)                 # acts on [W | b] flattened row by row
        flat = idx.ravel()
        M[np.ix_(flat, flat)] = K
    np.testing.assert_allclose(M @ y, x, rtol=1e-9, atol=1e-10 * np.abs(x).max())


def test_unknown_preconditioner_is_refused():
    with pytest.raises(ValueError, match="'precond' parameter must be one of"):
        NewtonKrylov(_tiny(), precond="ilu")


def _digits_trainer(opt, **kw):
    X, _ = load("digits", 200)
    return Trainer(ShardedProblem(MLP([64, 6, 64], activation="tanh", seed=0), X, X), opt,
                   lr=1e-2, newton={"curvature_samples": 64, "rebuild": 2, "lam": 1e-3,
                                    "cg_max_it": 200}, **kw)


@pytest.mark.parametrize("opt", ["newton-hss", "newton-cg", "newton-hf", "newton-kfac"])
def test_every_newton_preconditioner_trains(opt):
    t = _digits_trainer(opt)
    try:
        recs = run(t, max_steps=4, printer=None)
    finally:
        t.destroy()
    assert recs[-1]["loss"] < 0.7 * recs[0]["loss"]
    assert all(b["loss"] <= a["loss"] for a, b in zip(recs, recs[1:]))


def test_time_budget_stops_cg_after_one_iteration():
    # a budget that is over as soon as the first step starts: its CG stops after
    # one iteration (not after cg_max_it), and no second step is taken
    t = _digits_trainer("newton-cg")
    try:
        recs = run(t, time_budget=1e-12, printer=None)
    finally:
        t.destroy()
    assert len(recs) == 2 and recs[-1]["final"]
    assert recs[0]["cg_iterations"] == 1 and recs[0]["cg_stopped_by_budget"]
    free = _digits_trainer("newton-cg")
    try:
        ref = run(free, max_steps=1, printer=None)
    finally:
        free.destroy()
    assert ref[0]["cg_iterations"] > 1 and "cg_stopped_by_budget" not in ref[0]


@pytest.mark.parametrize("opt,per_step", [("adam", 1.0), ("newton-cg", None)])
def test_epochs_count_data_passes(opt, per_step):
    t = _digits_trainer(opt)
    try:
        recs = run(t, max_passes=3.0, printer=None)
    finally:
        t.destroy()
    steps, final = recs[:-1], recs[-1]
    assert final["data_passes"] >= 3.0 > steps[-1]["data_passes"]
    if per_step is not None:                  # full-batch gradient: one pass a step
        assert len(steps) == 3
        assert [r["data_passes"] for r in steps] == [0.0, 1.0, 2.0]


def test_time_split_adds_up_to_the_step_time():
    t = _digits_trainer("newton-hss")
    try:
        recs = run(t, max_steps=3, printer=None)
    finally:
        t.destroy()
    for a, b in zip(recs, recs[1:]):
        parts = sum(a[k] for k in ("time_grad", "time_compress", "time_refresh",
                                   "time_factor", "time_cg", "time_other"))
        assert parts == pytest.approx(b["time"] - a["time"], rel=1e-9, abs=1e-12)
        assert min(a[k] for k in ("time_grad", "time_cg", "time_other")) >= 0.0


def _cli(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "hsspetsc", "train"] + args,
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


def test_cli_help_shows_defaults_and_petsc_pass_through():
    rc, out = _cli(["--help"])
    assert rc == 0
    assert "(default: 1000)" in out and "(default: newton-hss)" in out
    assert "Single-dash options go to PETSc" in out and "--epochs" in out


def test_cli_layers_for_a_classifier_hint_at_cross_entropy():
    rc, out = _cli(["--data", "digits", "--layers", "64,16,10", "--steps", "1"])
    assert rc == 1 and "use --loss cross_entropy" in out


def test_cli_epochs_and_step_zero(tmp_path):
    log = str(tmp_path / "l.json")
    rc, out = _cli(["--data", "digits", "--n", "200", "--layers", "64,8,64", "--optimizer",
                    "newton-kfac", "--epochs", "20", "--log", log])
    assert rc == 0, out
    recs = json.load(open(log))
    assert recs[-1]["data_passes"] >= 20 > recs[-2]["data_passes"]
    assert "step    0  loss" in out                  # the initial state is step 0
    assert "newton-kfac" in out.splitlines()[-1]


def test_first_to_reach_names_the_fastest_per_level():
    from hsspetsc.cli import first_to_reach
    recs = ([{"optimizer": "a", "time": t, "loss": l} for t, l in
             [(0.0, 10.0), (1.0, 5.0), (2.0, 2.0), (3.0, 1.0)]] +
            [{"optimizer": "b", "time": t, "loss": l} for t, l in
             [(0.0, 10.0), (0.5, 4.0), (4.0, 3.0)]])
    lines = first_to_reach(recs).splitlines()[1:]
    assert lines, "no level"
    # b is first to the upper levels (4.0 at 0.5 s), only a reaches the lowest ones
    assert lines[0].split(":")[1].split()[0] == "b"
    assert lines[-1].split(":")[1].split()[0] == "a" and "b -" in lines[-1]
    # levels go down
    vals = [float(ln.split("<=")[1].split(":")[0]) for ln in lines]
    assert vals == sorted(vals, reverse=True)
