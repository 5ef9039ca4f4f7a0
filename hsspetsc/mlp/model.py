"""A small, fast numpy MLP with a flat float64 parameter vector.

Parameter layout (stable, documented): for each layer l = 1..L in order, the weight
matrix W_l (out_l x in_l, row-major) followed by the bias b_l (out_l). Weight
W_l[p, q] is at ``offset_l + p * in_l + q``, bias b_l[p] at
``offset_l + out_l * in_l + p`` (``model.layer_slices`` gives the offsets).

Losses (n samples):
- ``mse``: (1/n) sum_i 1/2 |f(x_i) - y_i|^2 (Gauss-Newton G_i = I);
- ``cross_entropy``: (1/n) sum_i -log softmax(z_i)[y_i] on the logits z (the last
  layer must have the identity output); Y one-hot or integer labels;
  G_i = diag(p_i) - p_i p_i^T.
"""
import numpy as np

from ..util.validation import as_float_array, check_choice, check_finite, check_int

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("mse", "cross_entropy")


def act(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))
    return z


def act_deriv(name, z, a):
    """sigma'(z), given z and a = sigma(z)."""
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "tanh":
        return 1.0 - a * a
    if name == "sigmoid":
        return a * (1.0 - a)
    return np.ones_like(z)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class MLP:
    """Multi-layer perceptron.

    Parameters
    ----------
    widths : list of int, [in, hidden..., out] (at least two entries).
    activation : hidden activation, a name or one name per hidden layer
        ("relu", "tanh", "sigmoid", "identity").
    output : activation of the last layer (default "identity").
    loss : "mse" or "cross_entropy".
    seed : int; weights ~ Glorot normal, biases 0.

    ``model.params`` is a copy of the flat parameter vector (assigning it checks the
    length and finiteness). An autoencoder is an MLP whose target is its input.
    """

    def __init__(self, widths, activation="tanh", output="identity", loss="mse", seed=0):
        where = "MLP"
        widths = list(widths) if not isinstance(widths, (str, bytes)) else None
        if widths is None or len(widths) < 2:
            raise ValueError(f"The 'widths' parameter of {where} must list at least an "
                             f"input and an output width. Got {widths!r} instead.")
        self.widths = [check_int(w, "widths", where, lo=1) for w in widths]
        n_hidden = len(self.widths) - 2
        acts = [activation] * n_hidden if isinstance(activation, str) else list(activation)
        if len(acts) != n_hidden:
            raise ValueError(f"The 'activation' parameter of {where} needs {n_hidden} "
                             f"names (one per hidden layer). Got {len(acts)}.")
        for a in acts:
            check_choice(a, "activation", where, ACTIVATIONS)
        check_choice(output, "output", where, ACTIVATIONS)
        self.loss_name = check_choice(loss, "loss", where, LOSSES)
        if loss == "cross_entropy" and output != "identity":
            raise ValueError("cross_entropy works on logits: use output='identity' "
                             "(the softmax is part of the loss).")
        self.activations = acts + [output]
        self.layer_slices = []
        off = 0
        for l in range(len(self.widths) - 1):
            i, o = self.widths[l], self.widths[l + 1]
            self.layer_slices.append((off, off + o * i, off + o * i + o))
            off += o * i + o
        self.n_params = off
        rng = np.random.default_rng(check_int(seed, "seed", where, lo=0))
        theta = np.zeros(self.n_params)
        for l, (w0, b0, _) in enumerate(self.layer_slices):
            i, o = self.widths[l], self.widths[l + 1]
            theta[w0:b0] = rng.standard_normal(o * i) * np.sqrt(2.0 / (i + o))
        self._params = theta

    # ---------------------------------------------------------------- params
    @property
    def params(self):
        return self._params.copy()

    @params.setter
    def params(self, value):
        self._params = self._check_params(value).copy()

    @property
    def n_layers(self):
        return len(self.widths) - 1

    def _check_params(self, params):
        if params is None:
            return self._params
        p = as_float_array(params, "params", "MLP", ndim=1)
        if p.shape != (self.n_params,):
            raise ValueError(f"The 'params' parameter of MLP must have length "
                             f"{self.n_params}. Got shape {p.shape} instead.")
        check_finite(p, "params", "MLP")
        return p

    def unpack(self, params=None):
        """[(W_l, b_l)] views into the flat vector."""
        p = self._check_params(params)
        out = []
        for l, (w0, b0, e0) in enumerate(self.layer_slices):
            i, o = self.widths[l], self.widths[l + 1]
            out.append((p[w0:b0].reshape(o, i), p[b0:e0]))
        return out

    def check_data(self, X, Y=None, where="MLP"):
        X = as_float_array(X, "X", where, ndim=2)
        if X.shape[1] != self.widths[0]:
            raise ValueError(f"The 'X' parameter of {where} must have {self.widths[0]} "
                             f"columns (the input width). Got shape {X.shape} instead.")
        check_finite(X, "X", where)
        if Y is None:
            return X, None
        Y = np.asarray(Y)
        if self.loss_name == "cross_entropy" and Y.ndim == 1:
            if Y.dtype.kind not in "iu" or Y.min() < 0 or Y.max() >= self.widths[-1]:
                raise ValueError(f"The 'Y' parameter of {where} must hold class labels in "
                                 f"[0, {self.widths[-1]}).")
            Y = np.eye(self.widths[-1])[Y]
        Y = as_float_array(Y, "Y", where, ndim=2)
        if Y.shape != (X.shape[0], self.widths[-1]):
            raise ValueError(f"The 'Y' parameter of {where} must have shape "
                             f"({X.shape[0]}, {self.widths[-1]}). Got {Y.shape} instead.")
        check_finite(Y, "Y", where)
        return X, Y

    # --------------------------------------------------------------- passes
    def forward_cache(self, X, params=None):
        """Forward pass keeping pre-activations zs and activations as (as[0] = X)."""
        layers = self.unpack(params)
        a = X
        zs, acts = [], [X]
        for (W, b), name in zip(layers, self.activations):
            z = a @ W.T + b
            a = act(name, z)
            zs.append(z)
            acts.append(a)
        return zs, acts

    def forward(self, X, params=None):
        """Network outputs f(X) (after the output activation; logits for CE)."""
        X, _ = self.check_data(X, where="MLP.forward")
        return self.forward_cache(X, params)[1][-1]

    def loss(self, X, Y, params=None):
        X, Y = self.check_data(X, Y, "MLP.loss")
        out = self.forward_cache(X, params)[1][-1]
        return self._loss_value(out, Y)

    def _loss_value(self, out, Y):
        n = out.shape[0]
        if self.loss_name == "mse":
            return 0.5 * float(np.sum((out - Y) ** 2)) / n
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -float(np.sum(Y * logp)) / n

    def loss_grad(self, X, Y, params=None):
        """(loss, flat gradient) by back-propagation."""
        X, Y = self.check_data(X, Y, "MLP.loss_grad")
        layers = self.unpack(params)
        zs, acts = self.forward_cache(X, params)
        n = X.shape[0]
        out = acts[-1]
        loss = self._loss_value(out, Y)
        if self.loss_name == "mse":
            delta = (out - Y) * act_deriv(self.activations[-1], zs[-1], out) / n
        else:
            delta = (softmax(out) - Y) / n
        grad = np.empty(self.n_params)
        for l in range(self.n_layers - 1, -1, -1):
            w0, b0, e0 = self.layer_slices[l]
            grad[w0:b0] = (delta.T @ acts[l]).ravel()
            grad[b0:e0] = delta.sum(axis=0)
            if l > 0:
                W = layers[l][0]
                delta = (delta @ W) * act_deriv(self.activations[l - 1], zs[l - 1], acts[l])
        return loss, grad

    def __repr__(self):
        return (f"MLP({self.widths}, activations={self.activations}, loss={self.loss_name!r}, "
                f"{self.n_params} parameters)")
