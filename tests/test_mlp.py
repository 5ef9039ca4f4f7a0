"""MLP, Gauss-Newton operator, baselines."""
import numpy as np
import pytest
from helpers import assert_close

import hsspetsc
from hsspetsc.baselines import KFAC, nystrom, rsvd
from hsspetsc.mlp import MLP, GaussNewton
from hsspetsc.mlp.model import softmax

CASES = [("mse", "identity", ["tanh", "relu"]), ("mse", "sigmoid", ["sigmoid", "tanh"]),
         ("cross_entropy", "identity", ["relu", "tanh"])]


def _tiny(loss, out, acts, n=9, seed=0):
    rng = np.random.default_rng(seed)
    m = MLP([5, 4, 3, 3], activation=acts, output=out, loss=loss, seed=seed + 1)
    X = rng.standard_normal((n, 5))
    Y = rng.random((n, 3)) if loss == "mse" else rng.integers(0, 3, n)
    return m, X, Y


def _dense_jacobian(m, X, params, ce):
    """J (n, d, N) column by column by central differences of the outputs."""
    eps = 1e-6
    cols = []
    for a in range(m.n_params):
        e = np.zeros(m.n_params)
        e[a] = eps
        fp = m.forward_cache(X, params + e)[1][-1]
        fm = m.forward_cache(X, params - e)[1][-1]
        cols.append((fp - fm) / (2 * eps))
    return np.stack(cols, axis=2)


def _dense_gn(m, X, J):
    n = X.shape[0]
    if m.loss_name == "mse":
        return np.einsum("idk,idl->kl", J, J) / n
    p = softmax(m.forward(X))
    G = np.einsum("ij,jk->ijk", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]
    return np.einsum("idk,ide,iel->kl", J, G, J) / n


@pytest.mark.parametrize("loss,out,acts", CASES)
def test_gradient_matches_finite_differences(loss, out, acts):
    m, X, Y = _tiny(loss, out, acts)
    th = m.params
    _, g = m.loss_grad(X, Y)
    eps = 1e-6
    fd = np.array([(m.loss(X, Y, th + eps * e) - m.loss(X, Y, th - eps * e)) / (2 * eps)
                   for e in np.eye(m.n_params)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss,out,acts", CASES)
def test_jvp_vjp_against_dense_jacobian(loss, out, acts):
    m, X, Y = _tiny(loss, out, acts)
    G = GaussNewton(m, X, Y)
    J = _dense_jacobian(m, X, m.params, m.loss_name == "cross_entropy")
    rng = np.random.default_rng(3)
    v = rng.standard_normal(m.n_params)
    u = rng.standard_normal((X.shape[0], 3))
    np.testing.assert_allclose(G.jvp(v), np.einsum("idk,k->id", J, v), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(G.vjp(u), np.einsum("idk,id->k", J, u), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss,out,acts", CASES)
def test_block_products_equal_dense_gauss_newton(loss, out, acts):
    m, X, Y = _tiny(loss, out, acts)
    G = GaussNewton(m, X, Y, damping=0.25)
    J = _dense_jacobian(m, X, m.params, m.loss_name == "cross_entropy")
    H = _dense_gn(m, X, J) + 0.25 * np.eye(m.n_params)
    V = np.random.default_rng(4).standard_normal((m.n_params, 5))
    np.testing.assert_allclose(G.matmat(V), H @ V, rtol=1e-6, atol=1e-8)   # FD Jacobian
    assert_close(G.matmat(V)[:, 2], G.matvec(V[:, 2]), rtol=1e-10)
    assert G.matmat(V[:, :0]).shape == (m.n_params, 0)
    with pytest.raises(ValueError, match="rows"):
        G.matmat(V[:-1])


@pytest.mark.parametrize("loss,out,acts", CASES)
def test_entries_equal_dense_gauss_newton(loss, out, acts):
    m, X, Y = _tiny(loss, out, acts)
    G = GaussNewton(m, X, Y)
    # exact J by forward mode with unit vectors (round-off), cross-checked above
    J = np.stack([G.jvp(e) for e in np.eye(m.n_params)], axis=2)
    Hd = _dense_gn(m, X, J)
    N = m.n_params
    E = G.entries(np.arange(N), np.arange(N))
    assert_close(E, Hd, rtol=1e-12)
    I, K = np.array([3, 0, N - 1, 17]), np.array([N - 2, 5, 3])
    assert_close(G.entries(I, K), Hd[np.ix_(I, K)], rtol=1e-12)
    assert_close(G.diagonal(), np.diag(Hd), rtol=1e-12)
    v = np.random.default_rng(0).standard_normal(N)
    assert_close(G.matvec(v), Hd @ v, rtol=1e-11)
    V = np.random.default_rng(1).standard_normal((N, 3))
    assert_close(G @ V, Hd @ V, rtol=1e-11)


def test_entries_without_hidden_layers_and_threads():
    rng = np.random.default_rng(0)
    m = MLP([6, 4], output="identity", loss="mse")
    X = rng.standard_normal((30, 6))
    G1 = GaussNewton(m, X, rng.random((30, 4)), n_threads=1)
    G2 = GaussNewton(m, X, rng.random((30, 4)), n_threads=2)
    idx = np.arange(m.n_params)
    assert np.array_equal(G1.entries(idx, idx), G2.entries(idx, idx))


def test_entry_sampling_reports_its_error():
    X, _ = hsspetsc.mlp.load_digits(300)
    m = MLP([64, 8, 64], activation="tanh", seed=0)
    full = GaussNewton(m, X, X)
    sub = GaussNewton(m, X, X, entry_samples=60, seed=1)
    err = sub.sampling_error(nrows=10)
    assert full.sampling_error(nrows=10) < 1e-12          # all samples: exact rows
    assert 1e-4 < err < 1.0
    rows = np.arange(5)
    exact = np.column_stack([full.matvec(np.eye(full.n)[a]) for a in rows]).T
    assert_close(full.entries(rows, np.arange(full.n)), exact, rtol=1e-10)


def test_compressed_gauss_newton_meets_tol():
    X, _ = hsspetsc.mlp.load_digits(200)
    m = MLP([64, 12, 64], activation="tanh", seed=0)
    G0 = GaussNewton(m, X, X)
    zero = G0.diagonal() == 0
    assert np.any(zero)                        # always-zero pixels: zero rows
    # no damping needed: the zero rows stay exactly zero and everything factors
    H0 = hsspetsc.compress(G0, leaf_size=64, tol=1e-6)
    K0 = G0.entries(np.arange(G0.n), np.arange(G0.n))
    D0 = H0.to_dense()
    assert np.all(D0[zero] == 0) and np.all(D0[:, zero] == 0)
    assert np.linalg.norm(D0 - K0) <= 10 * 1e-6 * np.linalg.norm(K0)
    F = H0.factorize(shift=1e-8 * np.abs(K0).max())
    b = np.random.default_rng(0).standard_normal(G0.n)
    assert_close(F.solve(b)[zero], b[zero] / F.shift, rtol=1e-10)
    delta = 1e-12 * G0.diagonal().mean()
    G = GaussNewton(m, X, X, damping=delta)
    Hd = G.entries(np.arange(G.n), np.arange(G.n))
    assert_close(Hd, G0.entries(np.arange(G.n), np.arange(G.n)) + delta * np.eye(G.n),
                 rtol=1e-12)
    v = np.ones(G.n)
    np.testing.assert_allclose(G.matvec(v), Hd @ v, rtol=1e-10)
    errs = []
    for tol in (1e-3, 1e-6):
        H = hsspetsc.compress(G, leaf_size=64, tol=tol, max_rank=1024)
        e = np.linalg.norm(H.to_dense() - Hd) / np.linalg.norm(Hd)
        assert e < 10 * tol
        errs.append(e)
    assert errs[1] < errs[0]


def test_kfac_is_exact_for_a_single_linear_layer():
    rng = np.random.default_rng(0)
    m = MLP([7, 5], output="identity", loss="mse", seed=2)
    X = rng.standard_normal((40, 7))
    G = GaussNewton(m, X, rng.random((40, 5)))
    Hd = G.entries(np.arange(G.n), np.arange(G.n))
    K = KFAC(G)
    np.testing.assert_allclose(K.to_dense(), Hd, rtol=1e-12, atol=1e-12 * np.abs(Hd).max())
    assert K.work_fraction == pytest.approx((5 * 5 + 8 * 8) / G.n ** 2)


def test_kfac_is_approximate_for_deeper_nets():
    X, _ = hsspetsc.mlp.load_digits(100)
    m = MLP([64, 6, 64], activation="tanh", seed=0)
    G = GaussNewton(m, X, X)
    Hd = G.entries(np.arange(G.n), np.arange(G.n))
    e = np.linalg.norm(KFAC(G).to_dense() - Hd) / np.linalg.norm(Hd)
    assert 1e-3 < e < 1.0


def test_rsvd_and_nystrom_error_decrease_with_rank():
    X, _ = hsspetsc.mlp.load_digits(100)
    m = MLP([64, 6, 64], activation="tanh", seed=0)
    G = GaussNewton(m, X, X)
    Hd = G.entries(np.arange(G.n), np.arange(G.n))
    for method in (rsvd, nystrom):
        errs, work = [], []
        for r in (5, 40, 200):
            A = method(G, G.n, r, seed=0)
            errs.append(np.linalg.norm(A.to_dense() - Hd) / np.linalg.norm(Hd))
            work.append(A.work_fraction)
        assert errs[0] > errs[1] > errs[2]
        assert work[0] < work[1] < work[2]
    # the dense eigen-truncation is a lower bound for rank-r errors
    w = np.linalg.eigvalsh(Hd)[::-1]
    assert errs[1] >= np.sqrt(np.sum(w[40:] ** 2)) / np.linalg.norm(w) * (1 - 1e-9)


def test_mlp_bad_input():
    m = MLP([4, 3, 2], loss="mse")
    with pytest.raises(ValueError, match="length 23"):
        m.params = np.zeros(5)
    with pytest.raises(ValueError, match="4 columns"):
        m.forward(np.zeros((3, 5)))
    Xn = np.zeros((3, 4))
    Xn[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.loss_grad(Xn, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="'activation'"):
        MLP([4, 3, 2], activation="swish")
    with pytest.raises(ValueError, match="'loss'"):
        MLP([4, 3, 2], loss="hinge")
    with pytest.raises(ValueError, match="logits"):
        MLP([4, 3, 2], loss="cross_entropy", output="sigmoid")
    with pytest.raises(ValueError, match="shape"):
        m.loss_grad(np.zeros((3, 4)), np.zeros((3, 3)))
    mc = MLP([4, 3], loss="cross_entropy")
    with pytest.raises(ValueError, match="labels"):
        mc.loss_grad(np.zeros((2, 4)), np.array([0, 7]))
    G = GaussNewton(m, np.zeros((3, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="length 23"):
        G.matvec(np.zeros(4))


def test_params_copy_safe_and_deterministic():
    a, b = MLP([4, 3, 2], seed=5), MLP([4, 3, 2], seed=5)
    assert np.array_equal(a.params, b.params)
    p = a.params
    p[:] = 0
    assert not np.array_equal(a.params, p)
    w0, b0, e0 = a.layer_slices[0]
    W, bias = a.unpack()[0]
    assert np.array_equal(a.params[w0:b0].reshape(3, 4), W) and np.all(bias == 0)


def test_fashion_mnist_loader():
    X, y = hsspetsc.mlp.load_fashion_mnist("test", n=50)
    assert X.shape == (50, 784) and X.dtype == np.float64
    assert 0.0 <= X.min() and X.max() <= 1.0 and X.max() > 0.5
    assert y.dtype == np.int64 and set(y) <= set(range(10))
    with pytest.raises(hsspetsc.mlp.DatasetMissing, match="not installed"):
        hsspetsc.mlp.load_fashion_mnist("train", path="/nonexistent")
    with pytest.raises(ValueError, match="'split'"):
        hsspetsc.mlp.load_fashion_mnist("valid")


def test_idx_reader_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + np.array([2, 3, 4], ">u4").tobytes() + arr.tobytes())
    assert np.array_equal(hsspetsc.mlp.read_idx(str(path)), arr)
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        hsspetsc.mlp.read_idx(str(path))
