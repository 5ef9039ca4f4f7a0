"""Hessian-free practice in the Newton-Krylov trainer, each piece against a direct
numpy implementation of its definition on a tiny net: the mini-batch stream and the
CG sub-batch (Gauss-Newton products against an explicit finite-difference
Jacobian), the CG warm start, Martens' CG backtracking."""
import numpy as np
import pytest

pytest.importorskip("petsc4py")

from hsspetsc.mlp import MLP  # noqa: E402
from hsspetsc.training import ShardedProblem  # noqa: E402
from hsspetsc.training.newton import BACKTRACK_ITERATIONS, NewtonKrylov  # noqa: E402


def _problem(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    Y = np.tanh(X @ rng.standard_normal((5, 3))) + 0.05 * rng.standard_normal((n, 3))
    model = MLP([5, 4, 3], activation="tanh", loss="mse", seed=seed)
    return model, X, Y, ShardedProblem(model, X, Y)


def _batch(n, size, step):
    """The definition: the first ``size`` of a permutation keyed by the step."""
    rng = np.random.default_rng(np.random.SeedSequence([0x6261746368, step]))
    return np.sort(rng.permutation(n)[:size])


def _gn_dense(model, X, theta, eps=1e-6):
    """(1/m) sum_i J_i^T J_i with J_i by central differences of the outputs."""
    N = theta.size
    J = np.empty((X.shape[0] * model.widths[-1], N))
    for a in range(N):
        e = np.zeros(N)
        e[a] = eps
        J[:, a] = (model.forward(X, theta + e) - model.forward(X, theta - e)).ravel() / (2 * eps)
    return J.T @ J / X.shape[0]


def _cg(A, b, x0, iters):
    """Plain CG from x0; the iterate after each iteration."""
    x, r = x0.copy(), b - A @ x0
    p, out = r.copy(), []
    for _ in range(iters):
        Ap = A @ p
        a = (r @ r) / (p @ Ap)
        x = x + a * p
        rn = r - a * Ap
        p = rn + (rn @ rn) / (r @ r) * p
        r = rn
        out.append(x.copy())
    return out


def test_batch_stream_and_sub_batch_products():
    model, X, Y, pb = _problem()
    theta = model.params
    idx = _batch(60, 24, 3)
    assert np.array_equal(pb.batch_indices(24, 3), idx)
    sub = pb.batch_indices(8, 3)
    assert set(sub) <= set(idx)                      # the CG batch is in the gradient batch
    loss, g = pb.loss_grad(theta, (24, 3))
    l_ref, g_ref = model.loss_grad(X[idx], Y[idx], theta)
    assert loss == pytest.approx(l_ref, rel=1e-13)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12 * np.linalg.norm(g_ref))
    assert pb.loss(theta, (24, 3)) == pytest.approx(model.loss(X[idx], Y[idx], theta),
                                                    rel=1e-13)
    v = np.random.default_rng(1).standard_normal(theta.size)
    Hv = pb.gauss_newton(theta, batch=(8, 3)).matvec(v)
    ref = _gn_dense(model, X[sub], theta) @ v
    assert np.linalg.norm(Hv - ref) <= 1e-6 * np.linalg.norm(ref)
    p0 = pb.passes
    pb.loss_grad(theta, (24, 3))
    assert pb.passes - p0 == pytest.approx(24 / 60)


def test_batch_schedule_grows_and_caps():
    model, X, Y, pb = _problem()
    nk = NewtonKrylov(pb, precond="none", batch_size=10, batch_growth=1.5, cg_batch=6,
                      prefix="hfsched_")
    try:
        sizes = [nk.batch_of_step(k) for k in range(7)]
        assert sizes[:4] == [(10, 0), (15, 1), (23, 2), (34, 3)]   # ceil(10 1.5^k)
        assert sizes[5] is None                       # 76 > 60 samples: the full batch
        assert nk.cg_batch_of_step(2) == (6, 2)
        assert nk.cg_batch_of_step(5) == (6, 5)       # a sub-batch of the full batch
    finally:
        nk.destroy()
    for bad, match in (({"batch_growth": 0.5}, "batch_growth"),
                       ({"cg_warm_start": 1.5}, "cg_warm_start"),
                       ({"cg_batch": 0}, "cg_batch"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=match):
            NewtonKrylov(pb, precond="none", prefix="hfbad_", **bad)


def test_warm_start_is_decay_times_previous_solution():
    model, X, Y, pb = _problem()
    nk = NewtonKrylov(pb, precond="none", lam=0.1, forcing=1e-12, cg_max_it=1,
                      cg_warm_start=0.95, prefix="hfwarm_")
    try:
        theta1, _ = nk.step(model.params)
        p1, lam = nk.prev_direction.copy(), nk.lam
        nk.step(theta1)
        got = nk.prev_direction
    finally:
        nk.destroy()
    _, g = model.loss_grad(X, Y, theta1)
    A = _gn_dense(model, X, theta1) + lam * np.eye(theta1.size)
    want = _cg(A, -g, 0.95 * p1, 1)[0]               # one CG iteration from 0.95 p1
    assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)
    assert np.linalg.norm(got - _cg(A, -g, np.zeros_like(g), 1)[0]) > 1e-3 * np.linalg.norm(want)


def test_backtracking_follows_martens_rule():
    model, X, Y, pb = _problem(n=80, seed=4)
    its = 14
    nk = NewtonKrylov(pb, precond="none", lam=1e-4, forcing=1e-14, cg_max_it=its,
                      cg_backtrack=True, batch_size=40, cg_batch=10, prefix="hfback_")
    theta = model.params
    try:
        nk.step(theta)                                # step 0: its own batch
        theta = theta + 0.0
        lam = nk.lam
        _, rec = nk.step(theta)
        got, chosen = nk.last_direction, rec["cg_iterate"]
    finally:
        nk.destroy()
    assert rec["cg_iterations"] == its
    idx, sub = _batch(80, 40, 1), _batch(80, 10, 1)
    _, g = model.loss_grad(X[idx], Y[idx], theta)
    A = _gn_dense(model, X[sub], theta) + lam * np.eye(theta.size)
    path = _cg(A, -g, np.zeros_like(g), its)
    kept = [k for k in range(1, its) if k in BACKTRACK_ITERATIONS] + [its]
    assert kept[:9] == [1, 2, 3, 4, 5, 7, 9, 11, 14]

    def f(k):
        return model.loss(X[idx], Y[idx], theta + path[k - 1])
    j = len(kept) - 1
    while j > 0 and f(kept[j - 1]) < f(kept[j]):      # back while the objective falls
        j -= 1
    assert chosen == kept[j]
    assert np.linalg.norm(got - path[chosen - 1]) <= 1e-6 * np.linalg.norm(got)


def _martens_cg(A, b, x0, max_it, rtol=1e-10):
    """CG from x0 with Martens' progress test (§4.4) on phi(x) = x'Ax/2 - b'x:
    (iterations, solution, 'martens' | 'residual' | 'cap')."""
    def phi(x):
        return 0.5 * x @ (A @ x) - b @ x
    r0 = np.linalg.norm(b - A @ x0)
    path = [x0] + _cg(A, b, x0, min(max_it, b.size))
    for i in range(1, len(path)):
        if np.linalg.norm(b - A @ path[i]) <= rtol * r0:
            return i, path[i], "residual"
        k = max(10, int(np.ceil(0.1 * i - 1e-12)))
        if i > k and phi(path[i]) < 0 and \
                (phi(path[i]) - phi(path[i - k])) / phi(path[i]) < k * 5e-4:
            return i, path[i], "martens"
    return len(path) - 1, path[-1], "cap"


@pytest.mark.parametrize("warm", [0.0, 0.95])
def test_cg_stops_on_martens_progress(warm):
    model, X, Y, pb = _problem(n=60, seed=2)
    nk = NewtonKrylov(pb, precond="none", lam=1e-2, cg_max_it=200, cg_stop="martens",
                      cg_warm_start=warm, prefix=f"hfmartens{int(warm * 100)}_")
    try:
        theta1, rec1 = nk.step(model.params)
        p1, lam = nk.prev_direction.copy(), nk.lam
        _, rec = nk.step(theta1)
        got = nk.prev_direction
    finally:
        nk.destroy()
    _, g = model.loss_grad(X, Y, theta1)
    # the trainer's own product, column by column (the product itself is tested
    # against finite differences above): what is tested here is where CG stops
    gn = pb.gauss_newton(theta1)
    A = gn.matmat(np.eye(theta1.size)) + lam * np.eye(theta1.size)
    A = 0.5 * (A + A.T)
    its, want, why = _martens_cg(A, -g, warm * p1, 200)
    assert why == "martens" and 10 < its < 200
    assert rec["cg_iterations"] == its
    assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)


def test_cg_stop_must_be_known():
    _, _, _, pb = _problem()
    with pytest.raises(ValueError, match="'cg_stop' parameter"):
        NewtonKrylov(pb, precond="none", cg_stop="progress", prefix="hfbadstop_")
