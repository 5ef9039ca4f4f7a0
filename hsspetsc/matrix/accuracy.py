"""Accuracy of a compressed matrix against its source.

- :func:`relative_error`: the user's check (eps2 from sampled rows, eps_F when K
  can be formed);
- the a-posteriori estimates ``compress`` and ``compress_sketch`` store (measured
  by :mod:`hsspetsc.compression.contract`): ``stats()["error_estimate"]``, in the measure
  ``tol`` promises, the relative Frobenius error |K - K~|_F / |K|_F from a few
  exact rows (entries path) or a few exact products (sketch path); with a shift,
  the measure that matters is |K - K~|_2 / shift (it bounds the spread of
  (shift I + K~)^-1 (shift I + K) around 1, see :mod:`hsspetsc.compression.params`),
  ``stats()["shift_error"]``, from the same probes: sqrt(N / p) |E(S, :)|_2 for p
  exact rows S, or |E Z|_2 / sqrt(p) for p Gaussian products Z
  (:func:`gram_estimate`). Both are exact in expectation for an error of low rank
  (whose singular vectors are spread over the indices) and err high, by up to
  sqrt(N / p), for an error spread over many directions;
- :func:`spread_bounds`: the interval that estimate puts the eigenvalues of the
  preconditioned matrix in, and its condition number.
"""
import numpy as np

from ..sources import as_source
from ..util.validation import check_int, rng_from_seed


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


def gram_estimate(gram, scale):
    """scale x sqrt(largest eigenvalue of ``gram``): scale x |D|_2 for the Gram
    matrix D D^T of a p x m error block D (summed over the ranks)."""
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
