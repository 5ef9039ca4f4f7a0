"""The SPD test-suite matrices (K02 ... K18, COV), generated from their formulas.

Every matrix is scaled to |K|_2 = 1. Grid matrices (K02, K03, K11-K15, K17, K18,
COV) are formed densely (N <= ``max_dense``, default 16384) and cached on disk as
float64 .npy; the point-kernel matrices K04-K10 stay entry-wise (any N): only
their diagonal (2 x the off-diagonal row sum, one O(N^2) Cython pass) and their
scale are cached (above N = 4096 the norm comes from power iteration on the exact
entries, to a relative 1e-6). The cache directory is ``$HSSPETSC_CACHE`` or
``~/.cache/hsspetsc``.

Decisions where the definitions leave room (see also README):
- K03 uses the Laplacian with mesh width 1/n (L = n^2 * poisson(n)), so that
  omega = 2 pi n / 10 means ten grid points per wavelength; with the 1/n^2
  scaling of K02 the Helmholtz shift would swamp the operator and K03 would be
  the identity.
- h (median distance), h_min and h_max of K04-K10 are estimated from 4000 random
  pairs of points.
- Grid coordinates are cell centres (i + 1/2)/n; x is the fast index.
"""
import math
import os

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..kernels.kernel_matrix import kernel_offdiag_rowsum
from ..matrix.io import atomic_write
from ..sources import DenseSource, KernelSource
from ..util.threads import effective_n_threads
from ..util.validation import check_choice, check_int

TESTSUITE_NAMES = ("K02", "K03", "K04", "K05", "K06", "K07", "K08", "K09", "K10", "K11",
                   "K12", "K13", "K14", "K15", "K17", "K18", "COV")
_KERNEL_NAMES = ("K04", "K05", "K06", "K07", "K08", "K09", "K10")
_VERSION = "v1"


def cache_dir():
    """Directory of the generated-matrix cache (created on demand)."""
    d = os.environ.get("HSSPETSC_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "hsspetsc")
    os.makedirs(d, exist_ok=True)
    return d


# ----------------------------------------------------------------- helpers
def _side(N, dim, name):
    n = int(round(N ** (1.0 / dim)))
    for cand in (n - 1, n, n + 1):
        if cand > 0 and cand ** dim == N:
            return cand
    kind = "square" if dim == 2 else "cube"
    raise ValueError(f"testsuite: {name} lives on a {dim}-D grid, so N must be a perfect "
                     f"{kind}. Got N = {N}.")


def _d1(n):
    """n x (bidiagonal: +1 on the diagonal, -1 on the sub-diagonal)."""
    return (n * sp.diags([np.ones(n), -np.ones(n - 1)], [0, -1], format="csr"))


def _grid2(n):
    c = (np.arange(n) + 0.5) / n
    y, x = np.meshgrid(c, c, indexing="ij")      # index i = iy * n + ix: x fast
    return x.ravel(), y.ravel()


def _inv_squared(M, sym=True, chunk=2048):
    """M^-2 (sym) or M^-T M^-1 (not sym) as a dense array, via sparse LU solves."""
    N = M.shape[0]
    lu = spla.splu(sp.csc_matrix(M))
    X = np.empty((N, N))
    for s in range(0, N, chunk):
        e = min(N, s + chunk)
        rhs = np.zeros((N, e - s))
        rhs[np.arange(s, e), np.arange(e - s)] = 1.0
        X[:, s:e] = lu.solve(rhs)
    K = np.empty((N, N))
    trans = "N" if sym else "T"
    for s in range(0, N, chunk):
        e = min(N, s + chunk)
        K[:, s:e] = lu.solve(np.ascontiguousarray(X[:, s:e]), trans=trans)
    del X
    K += K.T
    K *= 0.5
    return K


def _dirichlet_function(n, f):
    """Dense (S (x) S) diag(f) (S (x) S) for the 2-D Dirichlet sine basis, in O(N^2 n)."""
    j = np.arange(1, n + 1)
    S = np.sqrt(2.0 / (n + 1)) * np.sin(np.outer(j, j) * np.pi / (n + 1))
    M = np.einsum("ib,ab,jb->aij", S, f, S, optimize=True).reshape(n, n * n)
    G = (S[:, None, :] * S[None, :, :]).reshape(n * n, n)     # (i1, j1), a
    K = (G @ M).reshape(n, n, n, n).transpose(0, 2, 1, 3).reshape(n * n, n * n)
    return np.ascontiguousarray(K)


def _spectral_1d(n):
    """First and second periodic spectral derivative matrices on [0, 2 pi)."""
    k = np.fft.fftfreq(n, d=1.0 / n)
    k1 = 1j * k
    if n % 2 == 0:
        k1[n // 2] = 0.0
    I = np.eye(n)
    D1 = np.real(np.fft.ifft(k1[:, None] * np.fft.fft(I, axis=0), axis=0))
    D2 = np.real(np.fft.ifft((-(k ** 2))[:, None] * np.fft.fft(I, axis=0), axis=0))
    return D1, D2


def _fracture_coeff(n, rng):
    c = np.ones((n, n))
    c[rng.choice(n, n // 2, replace=False), :] = 1e-4
    c[:, rng.choice(n, n // 2, replace=False)] = 1e-4
    return c.ravel()


def _div_c_grad(n, c):
    D1 = _d1(n)
    I = sp.identity(n, format="csr")
    Dx, Dy = sp.kron(I, D1, format="csr"), sp.kron(D1, I, format="csr")
    C = sp.diags(c)
    return Dx @ C @ Dx.T + Dy @ C @ Dy.T, Dx, Dy


def _norm2(K):
    val = spla.eigsh(K, k=1, which="LA", tol=1e-10, return_eigenvectors=False,
                     v0=np.ones(K.shape[0]))
    return float(val[0])


# -------------------------------------------------------------- generators
def _gen_grid(name, N, rng):
    """Dense matrix and points for the grid / covariance members."""
    if name in ("K02", "K03"):
        n = _side(N, 2, name)
        t = 2.0 - 2.0 * np.cos(np.arange(1, n + 1) * np.pi / (n + 1))
        lam = t[:, None] + t[None, :]
        if name == "K02":
            f = (lam / n ** 2) ** -2.0
        else:
            omega = 2.0 * np.pi * n / 10.0
            f = (omega ** 2 - n ** 2 * lam) ** -2.0
        x, y = _grid2(n)
        return _dirichlet_function(n, f), np.column_stack([x, y])
    if name == "K11":
        x = (np.arange(N) + 0.5) / N
        c = 1.0 + 1000.0 * (np.abs(np.sin(20 * np.pi * x)) > 0.7)
        D1 = _d1(N)
        M = D1 @ sp.diags(c) @ D1.T
        return _inv_squared(M), x[:, None]
    if name in ("K12", "K13", "K14"):
        n = _side(N, 2, name)
        c = _fracture_coeff(n, rng)
        M, Dx, Dy = _div_c_grad(n, c)
        x, y = _grid2(n)
        pts = np.column_stack([x, y])
        if name == "K12":
            return _inv_squared(M), pts
        vx = np.cos(6 * np.pi * x + 6 * np.pi * y)
        vy = np.sin(20 * np.pi * x + 6 * np.pi * y)
        J = M + 1e3 * ((Dx - Dx.T) @ sp.diags(vx) + (Dy - Dy.T) @ sp.diags(vy))
        if name == "K14":
            J = J + 10.0 * sp.diags(np.cos(6 * np.pi * x + 6 * np.pi * y) ** 2)
        # (J J^T)^-1 = J^-T J^-1
        return _inv_squared(J, sym=False), pts
    if name == "K15":
        n = _side(N, 2, name)
        D1, D2 = _spectral_1d(n)
        I = sp.identity(n, format="csr")
        g = 2 * np.pi * np.arange(n) / n
        Y, X = np.meshgrid(g, g, indexing="ij")
        x, y = X.ravel(), Y.ravel()
        dx = sp.kron(I, sp.csr_matrix(D1), format="csr")
        dy = sp.kron(sp.csr_matrix(D1), I, format="csr")
        lap = sp.kron(I, sp.csr_matrix(D2)) + sp.kron(sp.csr_matrix(D2), I)
        nu = 1e-7
        J = (sp.identity(N) - nu * lap + sp.diags(np.sin(16 * y) ** 2) @ dx
             + sp.diags(np.cos(2 * x) ** 2) @ dy).tocsr()
        K = np.asarray(J.T @ J.toarray())
        K = 0.5 * (K + K.T)
        return K, np.column_stack([x, y])
    if name == "K17":
        n = _side(N, 3, name)
        _, D2 = _spectral_1d(n)
        I = sp.identity(n, format="csr")
        D2 = sp.csr_matrix(D2)
        lap = sp.kron(sp.kron(D2, I), I) + sp.kron(sp.kron(I, D2), I) + sp.kron(sp.kron(I, I), D2)
        K = (sp.identity(N) - lap).toarray()
        K = 0.5 * (K + K.T)
        g = 2 * np.pi * np.arange(n) / n
        Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
        return K, np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    if name == "K18":
        n = _side(N, 3, name)
        D1 = _d1(n)
        I = sp.identity(n, format="csr")
        Dx = sp.kron(sp.kron(I, I), D1)
        Dy = sp.kron(sp.kron(I, D1), I)
        Dz = sp.kron(sp.kron(D1, I), I)
        M = (Dx @ Dx.T + Dy @ Dy.T + Dz @ Dz.T).tocsr()
        c = (np.arange(n) + 0.5) / n
        Z, Y, X = np.meshgrid(c, c, c, indexing="ij")
        return _inv_squared(M), np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    if name == "COV":
        pts = rng.random((N, 2))
        r = np.sqrt(np.maximum(0.0, (pts ** 2).sum(1)[:, None] + (pts ** 2).sum(1)[None, :]
                               - 2 * pts @ pts.T))
        a = math.sqrt(3.0) * r / 0.2
        Sigma = (1 + a) * np.exp(-a)
        del r, a
        Sigma[np.diag_indices(N)] += 1e-8
        L = np.linalg.cholesky(Sigma)
        del Sigma
        s = 2 * N
        Z = rng.standard_normal((N, s))
        G = Z @ Z.T
        del Z
        K = (L @ G) @ L.T / s
        K = 0.5 * (K + K.T)
        K[np.diag_indices(N)] += 1e-3
        return K, pts
    raise AssertionError(name)


def _kernel_member(name, N, rng, n_threads):
    """Points, kernel, bandwidth, parameter for K04-K10."""
    X = rng.standard_normal((N, 6))
    m = min(4000, N * (N - 1) // 2)
    i = rng.integers(0, N, size=m)
    j = rng.integers(0, N, size=m)
    keep = i != j
    r = np.sqrt(((X[i[keep]] - X[j[keep]]) ** 2).sum(1))
    h, hmin, hmax = float(np.median(r)), float(r.min()), float(r.max())
    spec = {"K04": ("gaussian", 0.7 * h + 0.3 * hmax, 0.0),
            "K05": ("gaussian", h, 0.0),
            "K06": ("gaussian", 0.1 * h + 0.9 * hmin, 0.0),
            "K07": ("invpower", 1.0, 4.0),          # r^(2-d), d = 6
            "K08": ("multiquadric", h, 0.0),        # sqrt(h + r^2)
            "K09": ("imq", h, 0.0),                 # 1 / sqrt(h^2 + r^2)
            "K10": ("polynomial", h, 0.0)}[name]    # (x.y + h)^2
    return X, spec


def _kernel_testsuite(name, N, seed, use_cache, n_threads):
    rng = np.random.default_rng(seed)
    X, (kernel, h, param) = _kernel_member(name, N, rng, n_threads)
    path = os.path.join(cache_dir(), f"{name}_N{N}_s{seed}_{_VERSION}_diag.npz")
    if use_cache and os.path.exists(path):
        z = np.load(path)
        diag, scale = z["diag"], float(z["scale"])
    else:
        nt = effective_n_threads(n_threads)
        rowsum = np.empty(N)
        kernel_offdiag_rowsum(X, {"gaussian": 0, "imq": 3, "polynomial": 4,
                                  "invpower": 5, "multiquadric": 6}[kernel],
                              h, param, rowsum, nt)
        raw = KernelSource(X, kernel, h, param=param, diag=2.0 * rowsum, n_threads=n_threads)
        if N <= 4096:
            norm = _norm2(raw.to_dense())
        else:
            norm = _power_norm(raw)
        scale = 1.0 / norm
        diag = 2.0 * rowsum * scale
        if use_cache:
            atomic_write(path, lambda f: np.savez(f, diag=diag, scale=scale))
    src = KernelSource(X, kernel, h, param=param, diag=diag, scale=scale, n_threads=n_threads)
    src.name = name
    return src


def _power_norm(src, max_iter=30, rtol=1e-6):
    """|K|_2 of an entry-wise SPD source by power iteration (exact chunked matvecs).

    These members have positive entries, so the top eigenvector is positive and far
    from the rest of the spectrum: a few iterations from the ones vector suffice."""
    v = np.ones(src.n) / np.sqrt(src.n)
    lam = 0.0
    for _ in range(max_iter):
        w = _chunked_matvec(src, v)
        new = float(v @ w)
        v = w / np.linalg.norm(w)
        if abs(new - lam) <= rtol * abs(new):
            return new
        lam = new
    return lam


def _chunked_matvec(src, v, chunk=1024):
    v = np.asarray(v).ravel()
    out = np.empty(src.n)
    cols = np.arange(src.n, dtype=np.int64)
    for s in range(0, src.n, chunk):
        rows = cols[s:s + chunk]
        out[s:s + chunk] = src._block(rows, cols) @ v
    return out


def testsuite(name, N, seed=0, cache=True, max_dense=16384, n_threads=None):
    """A test-suite matrix as a source (the module docstring has the definitions).

    Parameters
    ----------
    name : str
        "K02" ... "K18" or "COV" (``TESTSUITE_NAMES``).
    N : int
        The order. 2-D grid members need a perfect square, 3-D ones a cube.
    seed : int
        For the random points / coefficients.
    cache : bool
        Read and write the on-disk cache (``cache_dir()``).
    max_dense : int
        Refuse grid members above this N (they are formed densely).

    Returns
    -------
    DenseSource or KernelSource
        A :class:`~hsspetsc.DenseSource` (grid members) or a
        :class:`~hsspetsc.KernelSource` (K04-K10); ``.points`` holds the grid or
        the points, ``.name`` the name.
    """
    where = "testsuite"
    name = check_choice(name, "name", where, TESTSUITE_NAMES)
    N = check_int(N, "N", where, lo=16)
    seed = check_int(seed, "seed", where, lo=0)
    if name in _KERNEL_NAMES:
        return _kernel_testsuite(name, N, seed, cache, n_threads)
    if N > max_dense:
        raise ValueError(f"testsuite: {name} is formed densely and N = {N} is larger than "
                         f"max_dense = {max_dense} ({8 * N * N / 2 ** 30:.1f} GiB).")
    path = os.path.join(cache_dir(), f"{name}_N{N}_s{seed}_{_VERSION}.npy")
    ppath = path.replace(".npy", "_points.npy")
    if cache and os.path.exists(path) and os.path.exists(ppath):
        K = np.load(path)
        pts = np.load(ppath)
    else:
        rng = np.random.default_rng(seed)
        K, pts = _gen_grid(name, N, rng)
        K /= _norm2(K)
        if cache:
            # points first: a reader takes the matrix only when both are there
            atomic_write(ppath, lambda f: np.save(f, pts))
            atomic_write(path, lambda f: np.save(f, K))
    src = DenseSource(K, check_symmetric=False)
    src.points = np.ascontiguousarray(pts, dtype=np.float64)
    src.name = name
    return src
