"""First-order optimizers (the baselines of the second-order path).

Update rules, with g the gradient at the current parameters theta (PyTorch
conventions, as users know them):

- ``SGD``:       theta -= lr g
- ``Momentum``:  v = mu v + g;           theta -= lr v
- ``Nesterov``:  v = mu v + g;           theta -= lr (g + mu v)
- ``AdaGrad``:   s += g^2;               theta -= lr g / (sqrt(s) + eps)
- ``RMSprop``:   s = rho s + (1-rho) g^2; theta -= lr g / (sqrt(s) + eps)
- ``Adam``:      m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
                 theta -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)

Each optimizer is stateful: ``theta = opt.step(theta, g)``; ``state_dict()`` /
``load_state_dict()`` make checkpoints exact. :func:`minibatch_epochs` runs
mini-batch training over shuffled batches.
"""
import time

import numpy as np

from ..util.validation import check_float, check_int


class Optimizer:
    name = "optimizer"

    def __init__(self, lr):
        self.lr = check_float(lr, "lr", type(self).__name__, lo=0.0, lo_open=True)
        self.t = 0
        self.state = {}

    def step(self, theta, grad):
        """Return the updated parameters (theta itself is not modified)."""
        theta = np.asarray(theta, dtype=np.float64)
        grad = np.asarray(grad, dtype=np.float64)
        if theta.shape != grad.shape:
            raise ValueError(f"{type(self).__name__}.step: parameters {theta.shape} and "
                             f"gradient {grad.shape} differ in shape.")
        self.t += 1
        return self._update(theta, grad)

    def _buf(self, key, like):
        if key not in self.state:
            self.state[key] = np.zeros_like(like)
        return self.state[key]

    def state_dict(self):
        return {"name": self.name, "lr": self.lr, "t": self.t,
                "state": {k: v.copy() for k, v in self.state.items()},
                "hyper": self._hyper()}

    def load_state_dict(self, d):
        if d["name"] != self.name:
            raise ValueError(f"state of a {d['name']} optimizer given to {self.name}")
        self.lr, self.t = float(d["lr"]), int(d["t"])
        self.state = {k: np.array(v, dtype=np.float64) for k, v in d["state"].items()}

    def _hyper(self):
        return {}

    def __repr__(self):
        h = ", ".join(f"{k}={v:g}" for k, v in self._hyper().items())
        return f"{type(self).__name__}(lr={self.lr:g}{', ' + h if h else ''})"


class SGD(Optimizer):
    name = "sgd"

    def _update(self, theta, g):
        return theta - self.lr * g


class Momentum(Optimizer):
    name = "momentum"

    def __init__(self, lr, mu=0.9):
        super().__init__(lr)
        self.mu = check_float(mu, "mu", "Momentum", lo=0.0, hi=1.0, hi_open=True)

    def _hyper(self):
        return {"mu": self.mu}

    def _update(self, theta, g):
        v = self._buf("v", g)
        v *= self.mu
        v += g
        return theta - self.lr * v


class Nesterov(Momentum):
    name = "nag"

    def _update(self, theta, g):
        v = self._buf("v", g)
        v *= self.mu
        v += g
        return theta - self.lr * (g + self.mu * v)


class AdaGrad(Optimizer):
    name = "adagrad"

    def __init__(self, lr, eps=1e-10):
        super().__init__(lr)
        self.eps = check_float(eps, "eps", "AdaGrad", lo=0.0)

    def _hyper(self):
        return {"eps": self.eps}

    def _update(self, theta, g):
        s = self._buf("s", g)
        s += g * g
        return theta - self.lr * g / (np.sqrt(s) + self.eps)


class RMSprop(Optimizer):
    name = "rmsprop"

    def __init__(self, lr, rho=0.99, eps=1e-8):
        super().__init__(lr)
        self.rho = check_float(rho, "rho", "RMSprop", lo=0.0, hi=1.0, hi_open=True)
        self.eps = check_float(eps, "eps", "RMSprop", lo=0.0)

    def _hyper(self):
        return {"rho": self.rho, "eps": self.eps}

    def _update(self, theta, g):
        s = self._buf("s", g)
        s *= self.rho
        s += (1 - self.rho) * g * g
        return theta - self.lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    name = "adam"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1 = check_float(beta1, "beta1", "Adam", lo=0.0, hi=1.0, hi_open=True)
        self.beta2 = check_float(beta2, "beta2", "Adam", lo=0.0, hi=1.0, hi_open=True)
        self.eps = check_float(eps, "eps", "Adam", lo=0.0)

    def _hyper(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, theta, g):
        m = self._buf("m", g)
        v = self._buf("v", g)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        mhat = m / (1 - self.beta1 ** self.t)
        vhat = v / (1 - self.beta2 ** self.t)
        return theta - self.lr * mhat / (np.sqrt(vhat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nag": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


def make_optimizer(name, lr, **kw):
    """Optimizer by name: sgd, momentum, nag, adagrad, rmsprop, adam."""
    if name not in OPTIMIZERS:
        raise ValueError(f"The 'optimizer' parameter must be one of {tuple(OPTIMIZERS)}. "
                         f"Got {name!r} instead.")
    return OPTIMIZERS[name](lr, **kw)


def minibatch_epochs(model, X, Y, optimizer, epochs=1, batch_size=None, seed=0,
                     callback=None):
    """Mini-batch training: each epoch shuffles the samples (``seed``) and takes one
    optimizer step per batch (``batch_size=None``: full batch). ``callback(record)``
    gets one dict per step: iteration, epoch, data_passes, time, loss (of the batch),
    grad_norm. Stops with ``FloatingPointError`` (keeping the last good parameters
    in the model) when a step produces NaN or Inf. Returns the list of records."""
    X, Y = model.check_data(X, Y, "minibatch_epochs")
    n = X.shape[0]
    bs = n if batch_size is None else check_int(batch_size, "batch_size",
                                                "minibatch_epochs", lo=1, hi=n)
    rng = np.random.default_rng(seed)
    theta = model.params
    history = []
    t0 = time.perf_counter()
    it = 0
    for ep in range(check_int(epochs, "epochs", "minibatch_epochs", lo=0)):
        order = rng.permutation(n) if bs < n else np.arange(n)
        for s in range(0, n, bs):
            idx = order[s:s + bs]
            with np.errstate(over="ignore", invalid="ignore"):   # checked just below
                loss, g = model.loss_grad(X[idx], Y[idx], theta)
                new = optimizer.step(theta, g)
            if not np.all(np.isfinite(new)) or not np.isfinite(loss):
                model.params = theta
                raise FloatingPointError(
                    f"{optimizer!r}: step {it + 1} produced NaN/Inf (learning rate too "
                    f"large?); the model keeps the last good parameters.")
            theta = new
            it += 1
            rec = {"optimizer": optimizer.name, "iteration": it, "epoch": ep + 1,
                   "data_passes": (ep * n + min(s + bs, n)) / n,
                   "time": time.perf_counter() - t0, "loss": float(loss),
                   "grad_norm": float(np.linalg.norm(g)), "cg_iterations": 0}
            history.append(rec)
            if callback is not None:
                callback(rec)
    model.params = theta
    return history
