"""Baselines to compare approximations of an SPD matrix H.

Each has ``matvec`` / ``@`` and ``work_fraction``: the work used, in the unit of
compression's ``entries_fraction`` (the fraction of the N^2 entries of H touched):
- randomized SVD / Nystrom: a product H V costs N entries per column of V, so the
  charge is (columns of all products) / N;
- KFAC: each number of its Kronecker factors costs one pass over the samples, like
  one entry of H, so the charge is sum_l (out_l^2 + (in_l + 1)^2) / N^2;
- dense: 1.
"""
import numpy as np

from ..util.validation import check_int, rng_from_seed


def _matmat(op, V):
    if hasattr(op, "matmat"):
        return op.matmat(V)
    return op @ V


class LowRank:
    """H ~= U diag(s) U^T."""

    def __init__(self, U, s, work_fraction, name):
        self.U, self.s = U, s
        self.n = U.shape[0]
        self.work_fraction = work_fraction
        self.name = name

    def matvec(self, V):
        V = np.asarray(V, dtype=np.float64)
        C = self.U.T @ V
        C = C * (self.s if C.ndim == 1 else self.s[:, None])
        return self.U @ C

    def __matmul__(self, V):
        return self.matvec(V)

    def to_dense(self):
        return (self.U * self.s) @ self.U.T


def nystrom(op, n, rank, oversample=10, seed=0):
    """Nystrom approximation of an SPD operator from rank + oversample matvecs:
    H ~= (H W)(W^T H W)^+ (H W)^T, truncated to ``rank`` (stable form)."""
    rank = check_int(rank, "rank", "nystrom", lo=1, hi=n)
    ell = min(n, rank + max(0, int(oversample)))
    rng = rng_from_seed(seed, "nystrom")
    W, _ = np.linalg.qr(rng.standard_normal((n, ell)))
    Y = _matmat(op, W)
    nu = np.sqrt(n) * np.finfo(float).eps * np.linalg.norm(Y)
    Y = Y + nu * W
    C = np.linalg.cholesky(0.5 * ((W.T @ Y) + (W.T @ Y).T))
    B = np.linalg.solve(C, Y.T).T
    U, sv, _ = np.linalg.svd(B, full_matrices=False)
    s = np.maximum(sv ** 2 - nu, 0.0)
    return LowRank(U[:, :rank], s[:rank], ell / n, "nystrom")


def rsvd(op, n, rank, oversample=10, power_iters=1, seed=0):
    """Randomized eigendecomposition of a symmetric operator (range finder with
    ``power_iters`` power iterations, then the Rayleigh-Ritz projection)."""
    rank = check_int(rank, "rank", "rsvd", lo=1, hi=n)
    ell = min(n, rank + max(0, int(oversample)))
    rng = rng_from_seed(seed, "rsvd")
    Q, _ = np.linalg.qr(_matmat(op, rng.standard_normal((n, ell))))
    cols = ell
    for _ in range(int(power_iters)):
        Q, _ = np.linalg.qr(_matmat(op, Q))
        cols += ell
    B = Q.T @ _matmat(op, Q)
    cols += ell
    w, V = np.linalg.eigh(0.5 * (B + B.T))
    order = np.argsort(w)[::-1][:rank]
    return LowRank(Q @ V[:, order], np.maximum(w[order], 0.0), cols / n, "rsvd")


class KFAC:
    """Kronecker-factored approximation of a Gauss-Newton matrix, one block per layer:
    H_l ~= G_l (x) A_l with A_l = mean x x^T (inputs with a 1 for the bias) and
    G_l = mean s s^T (output sensitivities of the layer's pre-activations, times
    G_i^{1/2}). Exact for a single linear layer with the MSE loss.

    Built from a :class:`hsspetsc.mlp.GaussNewton` (its stored per-sample factors).
    """

    def __init__(self, gn):
        model = gn.model
        self.model = model
        self.n = gn.n
        m = gn._m
        L = model.n_layers
        self.A, self.G = [], []
        count = 0
        for l in range(L):
            i_, o_ = model.widths[l], model.widths[l + 1]
            x = gn._xs[l]
            self.A.append(x.T @ x / m)
            s = gn._S[l]
            if gn.diag_last and l == L - 1:
                self.G.append(np.diag(np.mean(s * s, axis=0)))
            else:
                self.G.append(np.einsum("ipk,iqk->pq", s, s) / m)
            count += o_ * o_ + (i_ + 1) ** 2
        self.work_fraction = count / float(self.n) ** 2
        self.name = "kfac"

    def matvec(self, V):
        V = np.asarray(V, dtype=np.float64)
        vec = V.ndim == 1
        V2 = V.reshape(self.n, -1)
        out = np.empty_like(V2)
        for l, (w0, b0, e0) in enumerate(self.model.layer_slices):
            i_, o_ = self.model.widths[l], self.model.widths[l + 1]
            for j in range(V2.shape[1]):
                M = np.hstack([V2[w0:b0, j].reshape(o_, i_), V2[b0:e0, j][:, None]])
                R = self.G[l] @ M @ self.A[l]
                out[w0:b0, j] = R[:, :i_].ravel()
                out[b0:e0, j] = R[:, i_]
        return out[:, 0] if vec else out

    def __matmul__(self, V):
        return self.matvec(V)

    def to_dense(self):
        return self.matvec(np.eye(self.n))


__all__ = ["nystrom", "rsvd", "KFAC", "LowRank"]
