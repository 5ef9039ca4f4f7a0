"""MLPs and their Gauss-Newton Hessians.

    model = hsspetsc.mlp.MLP([64, 32, 64], activation="tanh", loss="mse", seed=0)
    loss, grad = model.loss_grad(X, X)
    H = hsspetsc.mlp.GaussNewton(model, X, X)      # matvec, diagonal, entries
    Ht = hsspetsc.compress(H, distance="kernel")
"""
from .data import DatasetMissing, load, load_digits, load_fashion_mnist, read_idx
from .gauss_newton import GaussNewton
from .model import ACTIVATIONS, LOSSES, MLP

__all__ = ["MLP", "GaussNewton", "load", "load_digits", "load_fashion_mnist", "read_idx",
           "DatasetMissing", "ACTIVATIONS", "LOSSES"]
