"""Accuracy of a compressed matrix against its source.

- :func:`relative_error`: the user's check (eps2 from sampled rows, eps_F when K
  can be formed);
- :func:`rows_estimate` / :func:`products_estimate`: the a-posteriori estimate
  ``compress`` and ``compress_sketch`` store in ``stats()["error_estimate"]``, in the
  measure ``tol`` promises: the relative Frobenius error |K - K~|_F / |K|_F, from
  a few exact rows (entries path) or a few exact products (sketch path);
- :func:`spectral_estimate`: with a shift, the measure that matters is
  |K - K~|_2 / shift (it bounds the spread of (shift I + K~)^-1 (shift I + K)
  around 1, see :mod:`hsspetsc._params`), ``stats()["shift_error"]``, estimated
  from the same probes: sqrt(N / p) |E(S, :)|_2 for p exact rows S, or
  |E Z|_2 / sqrt(p) for p Gaussian products Z. Both are exact in expectation for
  an error of low rank (whose singular vectors are spread over the indices) and
  err high, by up to sqrt(N / p), for an error spread over many directions;
- :func:`spread_bounds`: the interval that estimate puts the eigenvalues of the
  preconditioned matrix in, and its condition number.
"""
import numpy as np

from ._validation import check_int, rng_from_seed
from .sources import as_source


def relative_error(H, source, nrows=100, nrhs=8, seed=0, exact_max_n=4096):
    """Relative error of ``H`` against the matrix it compresses.

    Returns a dict:

    - ``eps2``: mean over ``nrows`` sampled rows i of |(K~W)_i - (KW)_i| / |(KW)_i|,
      W standard normal N x ``nrhs`` (rows of KW computed from entries);
    - ``eps_fro``: |K~ - K|_F / |K|_F when N <= ``exact_max_n`` (K formed from
      entries, K~ as H @ I), else None.
    """
    where = "relative_error"
    src = as_source(source, where)
    if src.n != H.n:
        raise ValueError(f"relative_error: H has N = {H.n} but the source has N = {src.n}.")
    nrows = check_int(nrows, "nrows", where, lo=1)
    nrhs = check_int(nrhs, "nrhs", where, lo=1)
    rng = rng_from_seed(seed, where)
    n = H.n
    rows = np.sort(rng.choice(n, min(nrows, n), replace=False))
    W = rng.standard_normal((n, nrhs))
    exact = src.entries(rows, np.arange(n)) @ W
    approx = (H @ W)[rows]
    num = np.linalg.norm(approx - exact, axis=1)
    den = np.linalg.norm(exact, axis=1)
    eps2 = float(np.mean(num / np.where(den > 0, den, 1.0)))
    eps_fro = None
    if n <= exact_max_n:
        K = src.to_dense(max_n=exact_max_n) if hasattr(src, "to_dense") else None
        Kt = H.to_dense(max_n=exact_max_n)
        eps_fro = float(np.linalg.norm(Kt - K) / np.linalg.norm(K))
    return {"eps2": eps2, "eps_fro": eps_fro, "nrows": int(rows.size), "nrhs": nrhs}


def rows_estimate(H, reader, rows, exact=None):
    """|K(S,:) - K~(S,:)|_F / |K(S,:)|_F for the sampled rows S (uniform, so the
    ratio estimates |K - K~|_F / |K|_F). Reads |S| x N entries through ``reader``
    (unless the exact rows are given).

    Returns (estimate, the exact rows, K~'s rows) so callers can re-use them."""
    n = H.n
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if exact is None:
        exact, _ = reader.read([0], [rows.size], rows, [0], [n],
                               np.arange(n, dtype=np.int64))
        exact = exact.reshape(rows.size, n)
    E = np.zeros((n, rows.size))
    E[rows, np.arange(rows.size)] = 1.0
    approx = H.matvec(E).T                  # K~ is symmetric: its rows S
    den = np.linalg.norm(exact)
    est = float(np.linalg.norm(approx - exact) / den) if den > 0 else 0.0
    return est, exact, approx


def products_estimate(H, KZ, Z):
    """|K Z - K~ Z|_F / |K Z|_F for Gaussian Z (estimates |K - K~|_F / |K|_F)."""
    den = np.linalg.norm(KZ)
    return float(np.linalg.norm(KZ - H.matvec(Z)) / den) if den > 0 else 0.0


def distributed_estimate(D, Z, KZ):
    """|K Z - K~ Z|_F / |K Z|_F over all ranks of a DistributedHSSMatrix, for this
    rank's rows Z and K Z (unit vectors give the sampled-rows estimate). Returns
    (estimate, |K Z|_F). Collective."""
    diff = KZ - D.matvec(Z)
    num = D.comm.sum(float(np.sum(diff * diff)))
    den = np.sqrt(D.comm.sum(float(np.sum(KZ * KZ))))
    return (float(np.sqrt(num) / den) if den > 0 else 0.0), float(den)


def spectral_estimate(diff, scale):
    """scale x |diff|_2 for a p x N (or N x p) block ``diff`` of the error, through
    its p x p Gram matrix (see the module docstring for ``scale``)."""
    diff = np.asarray(diff)
    gram = diff @ diff.T if diff.shape[0] <= diff.shape[1] else diff.T @ diff
    return gram_estimate(gram, scale)


def gram_estimate(gram, scale):
    """scale x sqrt(largest eigenvalue of ``gram``) (the Gram matrix of an error
    block, summed over ranks by the distributed contract)."""
    if gram.size == 0:
        return 0.0
    top = float(np.linalg.eigvalsh(0.5 * (gram + gram.T))[-1])
    return float(np.sqrt(max(top, 0.0)) * scale)


def spread_bounds(eta):
    """(lowest, highest eigenvalue, condition number) of (lam I + K~)^-1 (lam I + K)
    when |K - K~|_2 <= eta lam (K PSD): [1 / (1 + eta), 1 / (1 - eta)]; no bound
    (None) for eta >= 1."""
    if eta is None or not np.isfinite(eta) or eta >= 1.0:
        return None
    lo, hi = 1.0 / (1.0 + eta), 1.0 / (1.0 - eta)
    return {"low": lo, "high": hi, "condition": hi / lo}


def distributed_spectral_estimate(D, Z, KZ, scale):
    """scale x |K Z - K~ Z|_2 over all ranks of a DistributedHSSMatrix (this rank's
    rows of Z and K Z), through the p x p Gram matrix summed over the ranks: the
    figure :func:`spectral_estimate` gives for the whole block. Collective."""
    diff = KZ - D.matvec(Z)
    return gram_estimate(np.asarray(D.comm.sum(diff.T @ diff)), scale)

