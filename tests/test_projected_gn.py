"""Gauss-Newton matrix with projected per-sample curvature (``projections=r``)."""
import numpy as np
import pytest
from helpers import assert_close
from test_mlp import CASES, _dense_gn, _dense_jacobian, _tiny

import hsspetsc
from hsspetsc.mlp import MLP, GaussNewton
from hsspetsc.mlp.model import softmax
from hsspetsc.sources import evaluate_block


def _dense_projected(m, X, J, ids, r, seed=0):
    """(1/n) sum_i J_i^T G_i^{1/2} Omega_i Omega_i^T G_i^{1/2 T} J_i / r, with Omega_i
    drawn here from its documented stream (independent of the class)."""
    n, d = X.shape[0], J.shape[1]
    H = np.zeros((J.shape[2], J.shape[2]))
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([0x70726F6A, seed, ids[i]]))
        Om = rng.standard_normal((d, r))
        if m.loss_name == "cross_entropy":
            p = softmax(m.forward(X[i:i + 1]))[0]
            Om = (np.diag(np.sqrt(p)) - np.outer(p, np.sqrt(p))) @ Om
        U = J[i].T @ Om
        H += U @ U.T
    return H / (n * r)


@pytest.mark.parametrize("loss,out,acts", CASES)
@pytest.mark.parametrize("r", [1, 3])
def test_projected_entries_diagonal_and_products_are_one_matrix(loss, out, acts, r):
    m, X, Y = _tiny(loss, out, acts)
    ids = np.arange(40, 40 + X.shape[0])
    G = GaussNewton(m, X, Y, projections=r, sample_ids=ids, damping=0.5)
    # exact J by forward mode (checked against finite differences in test_mlp)
    J = np.stack([GaussNewton(m, X, Y).jvp(e) for e in np.eye(m.n_params)], axis=2)
    H = _dense_projected(m, X, J, ids, r) + 0.5 * np.eye(m.n_params)
    N = m.n_params
    assert_close(G.entries(np.arange(N), np.arange(N)), H, rtol=1e-12)
    I, K = np.array([3, 0, N - 1, 17]), np.array([N - 2, 5, 3])     # thin: dot loops
    assert_close(G.entries(I, K), H[np.ix_(I, K)], rtol=1e-12)
    assert_close(G.diagonal(), np.diag(H), rtol=1e-12)
    V = np.random.default_rng(1).standard_normal((N, 4))
    assert_close(G.matmat(V), H @ V, rtol=1e-11)
    assert_close(G.matvec(V[:, 0]), H @ V[:, 0], rtol=1e-11)
    assert "projections=%d" % r in repr(G)


@pytest.mark.parametrize("loss,out,acts", CASES[1:])
def test_projected_curvature_is_unbiased(loss, out, acts):
    """Many projections: H_r -> H (the error of the mean falls like 1/sqrt(r))."""
    m, X, Y = _tiny(loss, out, acts, n=4)
    J = _dense_jacobian(m, X, m.params, m.loss_name == "cross_entropy")
    H = _dense_gn(m, X, J)
    errs = []
    for r in (40, 4000):
        Hr = GaussNewton(m, X, Y, projections=r).matmat(np.eye(m.n_params))
        errs.append(np.linalg.norm(Hr - H) / np.linalg.norm(H))
    assert errs[1] < 0.1
    assert errs[1] < errs[0] / 3


def test_projections_are_keyed_by_the_global_sample_index():
    """Halves with their global indices sum to the whole: the same H_r whatever the
    split of the samples (over ranks)."""
    m, X, Y = _tiny("mse", "sigmoid", ["sigmoid", "tanh"], n=10)
    ids = np.arange(100, 110)
    whole = GaussNewton(m, X, Y, projections=2, sample_ids=ids)
    a = GaussNewton(m, X[:3], Y[:3], projections=2, sample_ids=ids[:3])
    b = GaussNewton(m, X[3:], Y[3:], projections=2, sample_ids=ids[3:])
    N = m.n_params
    idx = np.arange(N)
    parts = 0.3 * a.entries(idx, idx) + 0.7 * b.entries(idx, idx)
    assert_close(parts, whole.entries(idx, idx), rtol=1e-12)
    other = GaussNewton(m, X, Y, projections=2, sample_ids=ids, projection_seed=1)
    assert not np.allclose(other.entries(idx, idx), whole.entries(idx, idx))


def test_projected_blocks_same_bits_on_any_thread_count():
    X, _ = hsspetsc.mlp.load_digits(120)
    m = MLP([64, 10, 64], activation="tanh", seed=0)
    G = GaussNewton(m, X, X, projections=5)          # 600 pairs: two GEMM chunks
    rng = np.random.default_rng(0)
    I, K = rng.choice(G.n, 300, replace=False), rng.choice(G.n, 200, replace=False)
    one = evaluate_block(G.evaluator(), I, K, 1)
    two = evaluate_block(G.evaluator(), I, K, 2)
    assert np.array_equal(one, two)
    # the GEMM path against the per-entry dot loops (rows read one at a time)
    rows = np.vstack([evaluate_block(G.evaluator(), I[t:t + 1], K, 1) for t in range(20)])
    assert_close(one[:20], rows, rtol=1e-11)


def test_projected_gauss_newton_compresses_to_tol():
    X, _ = hsspetsc.mlp.load_digits(150)
    m = MLP([64, 12, 64], activation="tanh", seed=0)
    G = GaussNewton(m, X, X, projections=2, damping=1e-8)
    Hd = G.entries(np.arange(G.n), np.arange(G.n))
    assert np.linalg.matrix_rank(Hd - 1e-8 * np.eye(G.n), tol=1e-9 * np.abs(Hd).max()) \
        <= 300                                      # rank <= n r
    for tol in (1e-3, 1e-6):
        H = hsspetsc.compress(G, leaf_size=64, tol=tol, max_rank=1024)
        assert np.linalg.norm(H.to_dense() - Hd) <= 10 * tol * np.linalg.norm(Hd)


def test_projected_gauss_newton_bad_input():
    m, X, Y = _tiny("mse", "sigmoid", ["sigmoid", "tanh"])
    with pytest.raises(ValueError, match="projections"):
        GaussNewton(m, X, Y, projections=0)
    with pytest.raises(ValueError, match="sample_ids"):
        GaussNewton(m, X, Y, projections=2, sample_ids=np.arange(3))
    with pytest.raises(ValueError, match="sample_ids"):
        GaussNewton(m, X, Y, projections=2, sample_ids=np.linspace(0, 1, X.shape[0]))
