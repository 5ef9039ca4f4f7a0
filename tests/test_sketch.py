"""compress_sketch: randomized HSS from products, against dense references."""
import warnings

import numpy as np
import pytest
from helpers import assert_close

import hsspetsc
from hsspetsc.mlp import MLP, GaussNewton


def _gauss1d(n=1024, bandwidth=0.05, shuffle=False):
    rng = np.random.default_rng(5)
    x = np.sort(rng.random(n))
    if shuffle:
        x = x[rng.permutation(n)]
    return np.exp(-(x[:, None] - x[None, :]) ** 2 / (2 * bandwidth ** 2))


def _fro(H, K):
    return np.linalg.norm(H.to_dense() - K) / np.linalg.norm(K)


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return hsspetsc.compress_sketch(*args, **kwargs)


def test_error_tracks_tol_and_estimate_is_close():
    K = _gauss1d()
    errs = []
    for tol in (1e-4, 1e-7):
        H = hsspetsc.compress_sketch(K, samples=160, leaf_size=64, tol=tol, probes=16)
        e = _fro(H, K)
        assert e < 20 * tol
        est = H.stats()["error_estimate"]
        assert e / 3 < est < 3 * e
        assert H.stats()["truncated_nodes"] == []
        errs.append(e)
    assert errs[1] < errs[0] / 30


def test_angle_order_recovers_a_shuffled_matrix():
    # shuffled 1-D points: the given order has global off-diagonal ranks (truncated at
    # samples // 2), the Gram-angle tree finds the local ones
    K = _gauss1d(bandwidth=0.02, shuffle=True)
    tol = 1e-6
    nat = _quiet(K, samples=160, leaf_size=64, tol=tol, order="natural", probes=0)
    ang = hsspetsc.compress_sketch(K, samples=160, leaf_size=64, tol=tol, order="angle",
                                   probes=0)
    assert ang.truncated == [] and _fro(ang, K) < 20 * tol
    assert nat.truncated and _fro(nat, K) > 3 * _fro(ang, K)


def test_work_is_counted_in_entries_and_products():
    K = _gauss1d(512)
    calls = {"entries": 0, "products": 0}

    class Src(hsspetsc.DenseSource):
        def _block(self, I, J):
            calls["entries"] += len(I) * len(J)
            return super()._block(I, J)

        def matmat(self, V):
            calls["products"] += V.shape[1]
            return self.A @ V

    H = hsspetsc.compress_sketch(Src(K), samples=64, leaf_size=32, tol=1e-6, probes=4)
    s = H.stats()
    t = H.tree
    leaves = np.arange(t.first_leaf, t.n_nodes)
    couplings = sum(H.rank[2 * a + 1] * H.rank[2 * a + 2] for a in range(t.first_leaf))
    assert calls["products"] == s["products"] == 68
    assert calls["entries"] == s["entries_evaluated"] == \
        int(np.sum(t.node_size[leaves] ** 2) + couplings)
    assert s["entries_fraction"] == pytest.approx(
        (calls["entries"] + 68 * 512) / 512 ** 2, rel=1e-12)


def test_gauss_newton_sketch_meets_tol():
    X, _ = hsspetsc.mlp.load_digits(200)
    m = MLP([64, 12, 64], activation="tanh", seed=0)
    G = GaussNewton(m, X, X)
    idx = np.arange(G.n)
    Hd = G.entries(idx, idx)
    errs = []
    for tol in (1e-3, 1e-6):
        H = hsspetsc.compress_sketch(G, samples=900, leaf_size=64, tol=tol, probes=0)
        e = _fro(H, Hd)
        assert e < 20 * tol
        errs.append(e)
    assert errs[1] < errs[0]


def test_neuron_order_makes_the_output_block_block_diagonal():
    X, _ = hsspetsc.mlp.load_digits(100)
    m = MLP([64, 6, 10], activation="tanh", seed=1)
    G = GaussNewton(m, X, X[:, :10])
    perm = G.neuron_order()
    assert np.array_equal(np.sort(perm), np.arange(G.n))
    out = perm[6 * 65:]                          # output layer: 10 units x (6 + 1)
    Hout = G.entries(out, out)
    blocks = np.kron(np.eye(10), np.ones((7, 7))).astype(bool)
    assert np.all(Hout[~blocks] == 0.0) and np.abs(Hout[blocks]).sum() > 0
    # same A (activations and the constant 1) for every output unit
    assert_close(Hout[:7, :7], Hout[7:14, 7:14], rtol=1e-12)
    H = hsspetsc.compress_sketch(G, samples=400, leaf_size=28, tol=1e-6, order=perm,
                                 probes=0)
    Hd = G.entries(np.arange(G.n), np.arange(G.n))
    assert _fro(H, Hd) < 20 * 1e-6


def test_factorization_of_a_sketched_matrix():
    K = _gauss1d(800) + 1e-3 * np.eye(800)
    H = hsspetsc.compress_sketch(K, samples=120, leaf_size=50, tol=1e-9)
    shift = 1e-2
    F = H.factorize(shift=shift)
    b = np.random.default_rng(0).standard_normal(800)
    x = F.solve(b)
    Kt = H.to_dense() + shift * np.eye(800)
    np.testing.assert_allclose(Kt @ x, b, rtol=0, atol=1e-8 * np.linalg.norm(b))


def test_same_seed_same_matrix_and_small_samples_warn():
    K = _gauss1d(512)
    a = hsspetsc.compress_sketch(K, samples=64, leaf_size=32, seed=3)
    b = hsspetsc.compress_sketch(K, samples=64, leaf_size=32, seed=3)
    assert np.array_equal(a.proj, b.proj) and np.array_equal(a.far_data, b.far_data)
    with pytest.warns(RuntimeWarning, match="raise samples"):
        H = hsspetsc.compress_sketch(K, samples=4, leaf_size=32, tol=1e-8)
    assert H.stats()["truncated_nodes"]


def test_sketch_bad_input():
    K = _gauss1d(128)
    with pytest.raises(ValueError, match="samples"):
        hsspetsc.compress_sketch(K, samples=0)
    with pytest.raises(ValueError, match="samples"):
        hsspetsc.compress_sketch(K, samples=129)
    with pytest.raises(ValueError, match="max_rank"):
        hsspetsc.compress_sketch(K, samples=20, max_rank=21)
    with pytest.raises(ValueError, match="order"):
        hsspetsc.compress_sketch(K, samples=20, order="random")
    with pytest.raises(ValueError, match="points"):
        hsspetsc.compress_sketch(K, samples=20, order="geometric")
    with pytest.raises(ValueError, match="permutation"):
        hsspetsc.compress_sketch(K, samples=20, order=np.zeros(128, dtype=int))
    with pytest.raises(ValueError, match="permutation"):
        hsspetsc.compress_sketch(K, samples=20, order=np.arange(127))
    with pytest.raises(ValueError, match="tol"):
        hsspetsc.compress_sketch(K, samples=20, tol=0.0)
    entries_only = hsspetsc.EntrySource(128, lambda I, J: K[np.ix_(I, J)], np.diag(K).copy())
    with pytest.raises(TypeError, match="matmat"):
        hsspetsc.compress_sketch(entries_only, samples=20)

    class NaNProducts(hsspetsc.DenseSource):
        def matmat(self, V):
            out = self.A @ V
            out[3, 0] = np.nan
            return out

    with pytest.raises(ValueError, match="NaN"):
        hsspetsc.compress_sketch(NaNProducts(K), samples=20)

    class WrongShape(hsspetsc.DenseSource):
        def matmat(self, V):
            return (self.A @ V)[:, :-1]

    with pytest.raises(ValueError, match="shape"):
        hsspetsc.compress_sketch(WrongShape(K), samples=20)
