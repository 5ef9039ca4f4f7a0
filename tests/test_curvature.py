"""Mini-batch curvature, H~ refreshed on kept skeletons and the rebuild rule, the
HSS preconditioner against a dense reference, L-BFGS, the validation split and the
learning-rate grid."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import hsspetsc
from hsspetsc.gallery import kernel_matrix
from hsspetsc.mlp import MLP, GaussNewton, load
from hsspetsc.mlp.data import train_validation_split

petsc4py = pytest.importorskip("petsc4py")

from helpers import apply_newton_pc  # noqa: E402

from hsspetsc.training import ShardedProblem, Trainer, run  # noqa: E402
from hsspetsc.training.newton import NewtonKrylov  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kernel(n=900, h=1.5, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, 3))
    src = kernel_matrix(X, "gaussian", bandwidth=h)
    return X, src.entries(np.arange(n), np.arange(n))


def _blocks(H):
    return (H.near_data, H.far_data, H.sib_data, H.compensation, H.factor_compensation)


def _same(a, b):
    return all((x is None and y is None) or np.array_equal(x, y)
               for x, y in zip(_blocks(a), _blocks(b)))


BUILDS = {
    "entries": lambda K: hsspetsc.compress(K, leaf_size=64, tol=1e-6, max_rank=40),
    "near field": lambda K: hsspetsc.compress(K, leaf_size=64, tol=1e-6, budget=0.1),
    "sketch": lambda K: hsspetsc.compress_sketch(K, samples=120, leaf_size=64, tol=1e-6),
}


def _build_and_refresh(kind, K, K_new):
    """H~ of K built the ``kind`` way, and refreshed with K_new (the capped builds
    warn; that is not what these tests look at)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        H = BUILDS[kind](K)
        return H, hsspetsc.refresh(H, K_new)


@pytest.mark.parametrize("kind", list(BUILDS))
def test_refresh_with_the_same_source_reproduces_the_build(kind):
    _, K = _kernel()
    H, H1 = _build_and_refresh(kind, K, K)
    assert _same(H, H1)
    assert H1.stats()["error_estimate"] == H.stats()["error_estimate"]
    assert H1.stats()["refreshed"]


@pytest.mark.parametrize("kind", list(BUILDS))
def test_refresh_reads_every_block_of_the_new_source(kind):
    # the stored blocks are entries of the source: for 2K they double exactly
    _, K = _kernel()
    H, H2 = _build_and_refresh(kind, K, 2.0 * K)
    for a, b in zip(_blocks(H)[:3], _blocks(H2)[:3]):
        np.testing.assert_array_equal(2.0 * a, b)
    # the compensation is found again (to the search's factor 1.5): about doubled
    c1, c2 = H.stats()["compensation"], H2.stats()["compensation"]
    assert (c1 == 0 and c2 == 0) or 2.0 / 1.5 <= c2 / c1 <= 2.0 * 1.5


def test_refresh_of_a_nearby_matrix_is_accurate_and_measured():
    X, K = _kernel()
    K2 = kernel_matrix(X, "gaussian", bandwidth=1.4).entries(np.arange(900), np.arange(900))
    H = hsspetsc.compress(K, leaf_size=64, tol=1e-6)
    H2 = hsspetsc.refresh(H, K2)
    err = np.linalg.norm(H2.to_dense() - K2) / np.linalg.norm(K2)
    assert err < 1e-4                      # the kept skeletons still serve
    est = H2.stats()["error_estimate"]
    assert err / 3 <= est <= 3 * err       # and the estimate is of the new source
    # far cheaper than the build: only the stored blocks are read
    assert H2.stats()["entries_evaluated"] < 0.7 * H.stats()["entries_evaluated"]


def test_refresh_of_a_gauss_newton_matrix_at_new_parameters():
    # H~ exact at theta0 (full ranks); refreshed after a small step its error grows
    # with the step (the kept skeletons were chosen at theta0), and is measured
    X, _ = load("digits", 200)
    model = MLP([64, 6, 64], activation="tanh", seed=0)
    G0 = GaussNewton(model, X, X, damping=1e-6)
    H = hsspetsc.compress_sketch(G0, samples=400, leaf_size=32, tol=1e-8,
                                 order=G0.neuron_order())
    step = np.random.default_rng(2).standard_normal(model.n_params)
    errs = []
    for eps in (1e-4, 1e-3):
        G1 = GaussNewton(model, X, X, params=model.params + eps * step, damping=1e-6)
        with pytest.warns(RuntimeWarning, match="compress again"):
            H1 = hsspetsc.refresh(H, G1)
        D1 = G1.entries(np.arange(G1.n), np.arange(G1.n))
        err = np.linalg.norm(H1.to_dense() - D1) / np.linalg.norm(D1)
        assert err / 3 <= H1.stats()["error_estimate"] <= 3 * err
        errs.append(err)
    assert errs[0] < 1e-3 and errs[1] < 1e-2 and errs[0] < errs[1]


def test_refresh_refuses_bad_input():
    _, K = _kernel(300)
    H = hsspetsc.compress(K, leaf_size=64, tol=1e-4)
    with pytest.raises(ValueError, match="order 200, H has order 300"):
        hsspetsc.refresh(H, K[:200, :200])
    with pytest.raises(TypeError, match="must be an HSSMatrix"):
        hsspetsc.refresh(K, K)
    bad = K.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError):
        hsspetsc.refresh(H, bad)


# ---------------------------------------------------------------- trainer
def _problem(n=200, widths=(64, 6, 64), comm=None):
    X, _ = load("digits", n)
    return ShardedProblem(MLP(list(widths), activation="tanh", seed=0), X, X, comm=comm)


def test_curvature_mini_batch_is_one_stream_and_consistent():
    pb = _problem()
    idx = pb.curvature_indices(50, seed=3)
    assert idx.size == 50 and np.unique(idx).size == 50
    assert np.array_equal(idx, pb.curvature_indices(50, seed=3))
    assert not np.array_equal(idx, pb.curvature_indices(50, seed=4))
    # entries, diagonal and products of the mini-batch matrix all come from it
    theta = pb.model.params
    gn = pb.gauss_newton(theta, samples=50, seed=3)
    ref = GaussNewton(pb.model, pb.X[idx], pb.Y[idx], params=theta)
    D = ref.entries(np.arange(ref.n), np.arange(ref.n))
    scale = np.abs(D).max()                       # bounds scale with the result
    np.testing.assert_allclose(gn.diagonal(), np.diag(D), rtol=1e-12, atol=1e-12 * scale)
    v = np.random.default_rng(0).standard_normal(ref.n)
    Hv = gn.matvec(v)
    assert np.linalg.norm(Hv - D @ v) <= 1e-12 * np.linalg.norm(D @ v)
    blk = gn.entries(np.arange(5), np.arange(7))
    np.testing.assert_allclose(blk, D[:5, :7], rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("hss_samples", [0, 451])
def test_hss_preconditioner_applies_the_inverse_of_lambda_plus_curvature(hss_samples):
    # a tiny net (451 weights), H~ compressed to 1e-12 from entries (0) or from 451
    # products: the trainer's HSSPC applies (lambda I + H_curv)^-1, H_curv the
    # mini-batch Gauss-Newton matrix
    pb = _problem(60, (64, 3, 64))
    lam = 1e-2
    nk = NewtonKrylov(pb, precond="hss", prefix=f"hssapply{hss_samples}_",
                      curvature_samples=30, hss_samples=hss_samples,
                      compress_params={"tol": 1e-12, "max_rank": None, "neighbors": 8})
    theta = pb.model.params
    gn = pb.gauss_newton(theta)
    curv = pb.gauss_newton(theta, samples=30, seed=0)
    x = np.random.default_rng(1).standard_normal(gn.n)
    y = apply_newton_pc(nk, gn, lam, x, curv)
    D = curv.entries(np.arange(gn.n), np.arange(gn.n))
    # H~ of curvature + 1e-10 mean(diag) I, compensated to be PSD
    shift = lam + 1e-10 * np.mean(np.diag(D))
    ref = np.linalg.solve(D + shift * np.eye(gn.n), x)
    assert np.linalg.norm(y - ref) <= 1e-6 * np.linalg.norm(ref)


def _hss_trainer(pb, **newton):
    kw = {"curvature_samples": 64, "lam": 1e-3, "cg_max_it": 200}
    kw.update(newton)
    return Trainer(pb, "newton-hss", newton=kw,
                   prefix=f"rule_{abs(hash(tuple(sorted(kw.items())))) % 10 ** 8}_")


def test_refresh_at_unchanged_parameters_reproduces_the_build():
    pb = _problem()
    nk = NewtonKrylov(pb, precond="hss", prefix="refr_same_", curvature_samples=64)
    try:
        theta = pb.model.params
        gn = pb.gauss_newton(theta)
        curv = pb.gauss_newton(theta, samples=64, seed=0)
        from hsspetsc.petsc._options import _COMPRESSION, TABLE
        params = {k: TABLE[k][1] for k in _COMPRESSION}
        params["samples"] = 0
        nk.ctx.update(gn, 1e-3, "build", curv)
        H0, _ = nk.ctx.hss_matrix(params, ())
        assert "compressed" in nk.ctx.hss_how and nk.ctx.compress_time > 0
        nk.ctx.update(gn, 1e-3, "refresh", pb.gauss_newton(theta, samples=64, seed=0))
        H1, _ = nk.ctx.hss_matrix(params, ())
        assert "refreshed" in nk.ctx.hss_how and nk.ctx.refresh_time > 0
    finally:
        nk.destroy()
    assert H1 is not H0 and _same(H0, H1)


def test_rebuild_rule_follows_its_documented_thresholds():
    # a threshold of 1: about any iteration lost to the aging H~ compresses again
    limit, rebuild = 1, 4
    t = _hss_trainer(_problem(), rebuild=rebuild, rebuild_lost_its=limit)
    try:
        recs = run(t, max_steps=10, printer=None)[:-1]
    finally:
        t.destroy()
    actions = [r["hss_action"] for r in recs]
    assert actions[0] == "build" and "keep" in actions
    # at least one compression came from the rule, before the interval was up
    builds = [i for i, a in enumerate(actions) if a == "build"]
    assert any(b - a < rebuild for a, b in zip(builds, builds[1:])), actions
    last_build, lost, rate = 0, 0.0, None
    for i, r in enumerate(recs):
        if i > 0:
            expect = "build" if (lost > limit or i - last_build >= rebuild) \
                else "keep"
            assert r["hss_action"] == expect, (i, actions)
        if r["hss_action"] == "build":
            last_build, lost = i, 0.0
            assert r["cg_its_lost"] == 0.0
        else:
            its = r["cg_iterations"]
            expect_lost = max(its - rate * its / r["cg_per_decade"], 0.0) if its else 0.0
            assert r["cg_its_lost"] == pytest.approx(expect_lost, rel=1e-9, abs=1e-9)
            lost += r["cg_its_lost"]
        if r["hss_action"] == "build":
            rate = r["cg_per_decade"]
        assert (r["time_compress"] > 0) == (r["hss_action"] == "build")


def test_refresh_between_builds_and_no_rule():
    t = _hss_trainer(_problem(), rebuild=3, rebuild_lost_its=0, refresh=True)
    try:
        recs = run(t, max_steps=5, printer=None)[:-1]
    finally:
        t.destroy()
    assert [r["hss_action"] for r in recs] == ["build", "refresh", "refresh", "build",
                                               "refresh"]
    assert all((r["time_refresh"] > 0) == (r["hss_action"] == "refresh") for r in recs)


def test_keep_between_builds():
    t = _hss_trainer(_problem(), rebuild=3, rebuild_lost_its=0)
    try:
        recs = run(t, max_steps=5, printer=None)[:-1]
    finally:
        t.destroy()
    assert [r["hss_action"] for r in recs] == ["build", "keep", "keep", "build", "keep"]


def test_newton_options_are_validated():
    pb = _problem()
    for kw, msg in [({"rebuild": 0}, "'rebuild' parameter"), ({"lam": 0.0}, "'lam'"),
                    ({"curvature_samples": 0}, "'curvature_samples'"),
                    ({"rebuild_lost_its": -1}, "'rebuild_lost_its'"),
                    ({"hss_samples": -1}, "'hss_samples'")]:
        with pytest.raises(ValueError, match=msg):
            NewtonKrylov(pb, precond="hss", prefix="bad_", **kw)


def test_progress_line_during_long_cg():
    lines = []
    pb = _problem()
    nk = NewtonKrylov(pb, precond="none", prefix="progress_", forcing=1e-10, cg_max_it=30,
                      lam=1e-6, progress=lines.append, progress_every=0.0)
    try:
        nk.step(pb.model.params)
    finally:
        nk.destroy()
    assert lines and all("CG iteration" in ln for ln in lines)
    assert any("s to go" in ln for ln in lines)


# ---------------------------------------------------------------- L-BFGS
def test_lbfgs_minimizes_a_least_squares_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 8))
    Y = X @ rng.standard_normal((8, 3)) + 0.1 * rng.standard_normal((100, 3))
    model = MLP([8, 3], output="identity", loss="mse", seed=1)
    t = Trainer(ShardedProblem(model, X, Y), "lbfgs")
    recs = run(t, max_steps=60, printer=None)
    A = np.hstack([X, np.ones((100, 1))])
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    best = 0.5 * np.sum((A @ coef - Y) ** 2) / 100
    assert recs[-1]["loss"] == pytest.approx(best, rel=1e-8)
    assert all(b["loss"] <= a["loss"] for a, b in zip(recs, recs[1:]))


# ---------------------------------------------------------------- validation
def test_validation_split_never_overlaps_the_training_data():
    X, y, Xv, yv = train_validation_split("digits", 300, 60)
    Xall, yall = load("digits", 360)
    np.testing.assert_array_equal(X, load("digits", 300)[0])    # training set unchanged
    np.testing.assert_array_equal(Xv, Xall[300:360])            # the next samples
    assert X.shape[0] + Xv.shape[0] == 360
    with pytest.raises(ValueError, match="do not fit"):
        train_validation_split("digits", 1797, 1)
    # the CLI clips: all 1797 digits for training leave none for validation
    X, _, Xv, _ = train_validation_split("digits", 1790, 100, clip=True)
    assert X.shape[0] == 1790 and Xv.shape[0] == 7


def test_validation_figures_in_the_records():
    Xall, yall = load("digits", 300)
    X, y, Xv, yv = Xall[:250], yall[:250], Xall[250:], yall[250:]
    model = MLP([64, 16, 10], activation="tanh", loss="cross_entropy", seed=0)
    t = Trainer(ShardedProblem(model, X, y), "adam", lr=1e-2, validation=(Xv, yv))
    recs = run(t, max_steps=5, printer=None)
    ref = MLP([64, 16, 10], activation="tanh", loss="cross_entropy", seed=0)
    fin = recs[-1]
    assert fin["val_loss"] == pytest.approx(ref.loss(Xv, yv, t.theta), rel=1e-12)
    acc = np.mean(np.argmax(ref.forward(Xv, t.theta), axis=1) == yv)
    assert fin["val_accuracy"] == acc
    assert recs[0]["val_loss"] == pytest.approx(ref.loss(Xv, yv, ref.params), rel=1e-12)


# ---------------------------------------------------------------- CLI
def _cli(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "hsspetsc", "train"] + args,
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


def test_cli_lr_grid_trains_with_the_best_trial(tmp_path):
    log = str(tmp_path / "l.json")
    rc, out = _cli(["--data", "digits", "--n", "200", "--layers", "64,8,64", "--optimizer",
                    "adam", "--steps", "20", "--lr-grid", "1e-4,1e-2,10", "--log", log])
    assert rc == 0, out
    line = [ln for ln in out.splitlines() if "chosen from" in ln][0]
    trials = {float(t.split()[0]): t.split("(")[1].rstrip("),") for t in
              line.split("chosen from ")[1].split(" (loss after")[0].split(", ")}
    finite = {lr: float(v) for lr, v in trials.items() if v not in ("-", "inf")}
    chosen = float(line.split("learning rate ")[1].split()[0])
    assert chosen == min(finite, key=finite.get)
    recs = json.load(open(log))
    assert "val_loss" in recs[-1]                      # validation by default


@pytest.mark.parametrize("args,msg", [
    (["--lr-grid", "1e-3,x"], "'lr-grid' parameter"),
    (["--lr-grid", "0,1e-3"], "'lr-grid' parameter"),
    (["--validation", "1.0"], "'validation' parameter"),
    (["--rebuild-lost-its", "-1"], "'rebuild-lost-its' parameter"),
    (["--curvature-samples", "0"], "'curvature-samples' parameter"),
    (["--hss-projections", "0"], "'hss-projections' parameter")])
def test_cli_refuses_bad_training_options(args, msg):
    rc, out = _cli(["--data", "digits", "--n", "100", "--steps", "1"] + args)
    assert rc == 1 and msg in out and "Traceback" not in out
