"""First-order optimizers: hand-computed first steps, descent, checkpoints."""
import numpy as np
import pytest

from hsspetsc.mlp import MLP
from hsspetsc.mlp.optimizers import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    RMSprop,
    make_optimizer,
    minibatch_epochs,
)

TH = np.array([1.0, -2.0, 0.5])
G = np.array([0.2, -0.4, 0.0])
G2 = np.array([-0.1, 0.3, 0.5])


def test_first_steps_by_hand():
    np.testing.assert_allclose(SGD(0.1).step(TH, G), TH - 0.1 * G)
    o = Momentum(0.1, mu=0.9)
    t1 = o.step(TH, G)
    np.testing.assert_allclose(t1, TH - 0.1 * G)
    np.testing.assert_allclose(o.step(t1, G2), t1 - 0.1 * (0.9 * G + G2))
    o = Nesterov(0.1, mu=0.9)
    t1 = o.step(TH, G)
    np.testing.assert_allclose(t1, TH - 0.1 * (G + 0.9 * G))
    v2 = 0.9 * G + G2
    np.testing.assert_allclose(o.step(t1, G2), t1 - 0.1 * (G2 + 0.9 * v2))
    o = AdaGrad(0.1, eps=1e-10)
    np.testing.assert_allclose(o.step(TH, G), TH - 0.1 * G / (np.abs(G) + 1e-10))
    o = RMSprop(0.1, rho=0.9, eps=1e-8)
    np.testing.assert_allclose(o.step(TH, G), TH - 0.1 * G / (np.sqrt(0.1 * G * G) + 1e-8))
    o = Adam(0.1, eps=1e-8)
    # first Adam step: m^ = g, v^ = g^2 -> theta - lr g / (|g| + eps)
    np.testing.assert_allclose(o.step(TH, G), TH - 0.1 * G / (np.abs(G) + 1e-8))


@pytest.mark.parametrize("name,lr", [("sgd", 0.5), ("momentum", 0.1), ("nag", 0.1),
                                     ("adagrad", 0.05), ("rmsprop", 0.005), ("adam", 0.01)])
def test_each_optimizer_decreases_the_loss(name, lr):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5))
    Y = np.tanh(X @ rng.standard_normal((5, 2)))
    m = MLP([5, 8, 2], activation="tanh", seed=1)
    l0 = m.loss(X, Y)
    hist = minibatch_epochs(m, X, Y, make_optimizer(name, lr), epochs=30, batch_size=16)
    assert m.loss(X, Y) < 0.7 * l0
    assert hist[-1]["data_passes"] == pytest.approx(30.0)
    assert len(hist) == 30 * 4


def test_nan_step_keeps_last_good_parameters():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    m = MLP([3, 4, 3], activation="relu", seed=0)
    with pytest.raises(FloatingPointError, match="last good"):
        minibatch_epochs(m, X * 1e150, X * 1e150, SGD(1e10), epochs=5)
    assert np.all(np.isfinite(m.params))


def test_state_dict_roundtrip_continues_exactly():
    rng = np.random.default_rng(0)
    gs = rng.standard_normal((6, 4))
    for cls in OPTIMIZERS.values():
        a = cls(0.01)
        th = np.ones(4)
        for g in gs[:3]:
            th = a.step(th, g)
        b = cls(0.01)
        b.load_state_dict(a.state_dict())
        ta, tb = th.copy(), th.copy()
        for g in gs[3:]:
            ta, tb = a.step(ta, g), b.step(tb, g)
        assert np.array_equal(ta, tb)


def test_bad_input():
    with pytest.raises(ValueError, match="'optimizer'"):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="'lr'"):
        SGD(-1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        SGD(0.1).step(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="'mu'"):
        Momentum(0.1, mu=1.5)
