"""Matrix sources: what the compressor reads a matrix through.

The Source protocol, in one place:

- required: ``n``, ``entries(I, J)`` (the block K[I][:, J]) and ``diagonal()``;
  nothing else is needed (geometry-oblivious);
- optional ``entries_batch(blocks)``: many blocks in one call (a list of (I, J)
  pairs in, a list of arrays out). The compressor reads a whole tree level per
  call; the default loops over ``entries``. Give one when a call is expensive
  (a remote or collective source);
- optional ``evaluator()``: a nogil block evaluator (``hsspetsc.kernels.entries``), so the
  compressor evaluates entries in its Cython kernels without the GIL (kernel,
  dense and Gauss-Newton sources have one; None otherwise);
- optional ``matmat(V)``: products K @ V (``compress_sketch`` needs them); None
  when the source has none;
- optional ``points`` (enables the geometric distance) and ``to_dense()``.
"""
from abc import ABC, abstractmethod

import numpy as np

from ..kernels.entries import DenseEvaluator, SubsetEvaluator
from ..kernels.kernel_matrix import GEMM_MIN_DIM, KernelEvaluator, kernel_from_gram_lower
from ..util.blocks import fill_with_evaluator
from ..util.threads import effective_n_threads
from ..util.validation import (
    as_float_array,
    as_index_array,
    check_finite,
    check_int,
    warn_low_precision,
)

__all__ = ["Source", "DenseSource", "EntrySource", "KernelSource", "as_source"]


class Source(ABC):
    """Base class of matrix sources (see the module docstring for the protocol).
    Subclasses implement ``_block(I, J)`` and ``diagonal()``; ``entries`` validates
    the indices and calls ``_block``."""

    n = 0
    points = None
    matmat = None            # products K @ V, when a subclass can give them

    @property
    def shape(self):
        return (self.n, self.n)

    def entries(self, I, J):
        """Return the dense block K[I][:, J] as a float64 array (len(I), len(J))."""
        I = as_index_array(I, self.n, "I", f"{type(self).__name__}.entries")
        J = as_index_array(J, self.n, "J", f"{type(self).__name__}.entries")
        return self._block(I, J)

    def entries_batch(self, blocks):
        """K[I][:, J] for every (I, J) of ``blocks`` (validated int64 arrays)."""
        return [self._block(I, J) for I, J in blocks]

    def evaluator(self):
        """A nogil block evaluator, or None (the default)."""
        return None

    @abstractmethod
    def _block(self, I, J):
        """K[I][:, J] for validated int64 index arrays."""

    @abstractmethod
    def diagonal(self):
        """The diagonal of K, shape (n,)."""

    def to_dense(self, max_n=20000):
        """The whole matrix as an ndarray (refused above ``max_n`` rows)."""
        if self.n > max_n:
            raise ValueError(f"to_dense: N = {self.n} is larger than max_n = {max_n}; "
                             f"a dense copy would need {8 * self.n ** 2 / 2 ** 30:.1f} GiB.")
        idx = np.arange(self.n, dtype=np.int64)
        return self._block(idx, idx)

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n})"


def evaluate_block(ev, I, J, n_threads=None):
    """K[I][:, J] through a nogil evaluator, rows split over the threads."""
    I = np.ascontiguousarray(I, dtype=np.int64)
    J = np.ascontiguousarray(J, dtype=np.int64)
    out = np.empty((I.size, J.size))
    z = np.zeros(1, dtype=np.int64)
    fill_with_evaluator(ev, z, [I.size], I, z, [J.size], J, z, out.reshape(-1),
                        effective_n_threads(n_threads))
    return out


def _own_block(obj, cls):
    """True when ``obj`` evaluates entries with ``cls._block`` (a subclass that
    overrides ``_block`` must not be bypassed by the class's evaluator)."""
    return type(obj)._block is cls._block


class DenseSource(Source):
    """A dense symmetric ndarray as a source.

    Parameters
    ----------
    A : (n, n) array_like, real, symmetric, finite.
    check_symmetric : bool
        Refuse matrices with max|A - A^T| > 1e-10 max|A| (default True).
    points : optional (n, d) array
        Coordinates of the rows (enables ``distance="geometric"``).
    trusted : bool
        Skip the checks (finite, symmetric): for a float64 matrix the caller formed
        itself from a validated source, where the checks would cost a pass over N^2.
    """

    def __init__(self, A, check_symmetric=True, points=None, trusted=False):
        where = "DenseSource"
        if points is not None:
            points = as_float_array(points, "points", where, ndim=2)
            if points.shape[0] != np.shape(A)[0]:
                raise ValueError(f"The 'points' parameter of {where} must have "
                                 f"{np.shape(A)[0]} rows. Got shape {points.shape} "
                                 f"instead.")
        self.points = points
        if trusted and isinstance(A, np.ndarray) and A.dtype == np.float64 \
                and A.ndim == 2 and A.shape[0] == A.shape[1] and A.shape[0] >= 1:
            self.A, self.n = A, A.shape[0]
            return
        A = np.asarray(A)
        A = as_float_array(A, "A", where, ndim=2, warn_precision=True)
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"The 'A' parameter of {where} must be a square matrix. "
                             f"Got shape {A.shape} instead.")
        if A.shape[0] < 1:
            raise ValueError(f"The 'A' parameter of {where} must not be empty.")
        check_finite(A, "A", where)
        if check_symmetric:
            scale = float(np.max(np.abs(A))) or 1.0
            asym = float(np.max(np.abs(A - A.T)))
            if asym > 1e-10 * scale:
                raise ValueError(f"The 'A' parameter of {where} must be symmetric. Got "
                                 f"max|A - A^T| = {asym:.3g} (max|A| = {scale:.3g}).")
        self.A = A
        self.n = A.shape[0]

    def _block(self, I, J):
        return self.A[np.ix_(I, J)]

    def evaluator(self):
        if not _own_block(self, DenseSource):
            return None
        return DenseEvaluator(self.A)

    def matmat(self, V):
        """K @ V."""
        return self.A @ V

    def diagonal(self):
        return np.diagonal(self.A).copy()

    def to_dense(self, max_n=None):
        return self.A.copy()


class EntrySource(Source):
    """A matrix given by a user callback.

    Parameters
    ----------
    n : int
        Order of the matrix.
    entries : callable ``entries(I, J) -> (len(I), len(J)) ndarray``
        Receives int64 index arrays; must return the block K[I][:, J].
    diagonal : callable ``diagonal() -> (n,)`` or an (n,) array
        The diagonal of K.
    points : optional (n, d) array, enables ``distance="geometric"``.
    entries_batch : optional callable ``entries_batch(blocks) -> list of arrays``
        Many blocks per call (``blocks`` is a list of (I, J) index pairs); the
        compressor then calls it once per tree level instead of calling
        ``entries`` once per block.
    matmat : optional callable ``matmat(V) -> K @ V`` (for ``compress_sketch``).
    """

    def __init__(self, n, entries, diagonal, points=None, entries_batch=None,
                 matmat=None):
        where = "EntrySource"
        self.n = check_int(n, "n", where, lo=1)
        if not callable(entries):
            raise TypeError(f"The 'entries' parameter of {where} must be callable. "
                            f"Got {type(entries).__name__} instead.")
        self._entries = entries
        if callable(diagonal):
            diag = diagonal()
        else:
            diag = diagonal
        diag = as_float_array(diag, "diagonal", where, ndim=1, warn_precision=True)
        if diag.shape != (self.n,):
            raise ValueError(f"The 'diagonal' parameter of {where} must have length "
                             f"{self.n}. Got shape {diag.shape} instead.")
        check_finite(diag, "diagonal", where)
        self._diag = diag
        if points is not None:
            points = as_float_array(points, "points", where, ndim=2, warn_precision=True)
            if points.shape[0] != self.n:
                raise ValueError(f"The 'points' parameter of {where} must have {self.n} "
                                 f"rows. Got shape {points.shape} instead.")
            check_finite(points, "points", where)
        self.points = points
        for name, f in (("entries_batch", entries_batch), ("matmat", matmat)):
            if f is not None and not callable(f):
                raise TypeError(f"The '{name}' parameter of {where} must be callable or "
                                f"None. Got {type(f).__name__} instead.")
        self._batch = entries_batch
        if matmat is not None:
            self.matmat = matmat

    def _block(self, I, J):
        return self._checked(self._entries(I, J), I, J, "entries")

    def entries_batch(self, blocks):
        if self._batch is None:
            return super().entries_batch(blocks)
        values = list(self._batch(blocks))
        if len(values) != len(blocks):
            raise ValueError(f"EntrySource: the entries_batch callback returned "
                             f"{len(values)} blocks for {len(blocks)} requested.")
        return [self._checked(v, I, J, "entries_batch")
                for v, (I, J) in zip(values, blocks)]

    def _checked(self, out, I, J, what):
        out = np.asarray(out)
        if not getattr(self, "_warned_precision", False) and out.dtype.kind == "f" \
                and out.dtype.itemsize < 8:
            self._warned_precision = True
            warn_low_precision(out.dtype, f"{what} (callback result)", "EntrySource")
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (len(I), len(J)):
            raise ValueError(f"EntrySource: the {what} callback returned shape {out.shape} "
                             f"for a ({len(I)}, {len(J)}) block.")
        check_finite(out, f"{what} (callback result)", "EntrySource")
        return out

    def diagonal(self):
        return self._diag.copy()


KERNEL_CODES = {"gaussian": 0, "laplace": 1, "matern32": 2, "imq": 3, "polynomial": 4,
                "invpower": 5, "multiquadric": 6}
PUBLIC_KERNELS = ("gaussian", "laplace", "matern32", "imq", "polynomial")


GRAM_TILE = 2048       # rows per GEMM tile of KernelSource.to_dense


class KernelSource(Source):
    """Kernel matrix K_ij = scale * k(x_i, x_j), entries evaluated in a Cython prange
    kernel. Built by :func:`hsspetsc.gallery.kernel_matrix`; ``diag`` overrides the
    diagonal (used by the test suite, whose diagonal is 2 x the off-diagonal row sum).
    """

    def __init__(self, points, kernel, bandwidth, shift=0.0, param=0.0, diag=None,
                 scale=1.0, n_threads=None):
        self.points = np.ascontiguousarray(points, dtype=np.float64)
        self.n = self.points.shape[0]
        self.kernel = kernel
        self._code = KERNEL_CODES[kernel]
        self.bandwidth = float(bandwidth)
        self.param = float(param)
        self.shift = float(shift)
        self.scale = float(scale)
        self.n_threads = n_threads
        self._sq = np.einsum("ij,ij->i", self.points, self.points)  # for GEMM tiles
        if diag is None:
            # k(x, x): constant for radial kernels, (|x|^2 + h)^2 for the polynomial
            k0 = self._eval(np.zeros(1, np.int64), np.zeros(1, np.int64), None)[0, 0]
            if kernel == "polynomial":
                sq = np.einsum("ij,ij->i", self.points, self.points)
                d = (sq + self.bandwidth) ** 2
            else:
                d = np.full(self.n, k0)
            diag = self.scale * d + self.shift
        self._diag = np.ascontiguousarray(diag, dtype=np.float64)

    def _eval(self, I, J, diag):
        ev = KernelEvaluator(self.points, self._code, self.bandwidth, self.param,
                             1.0 if diag is None else self.scale,
                             np.zeros(0) if diag is None else diag, self._sq)
        return evaluate_block(ev, I, J, self.n_threads)

    def _block(self, I, J):
        # diagonal entries come from the stored diagonal (shift, the suite's fix)
        return self._eval(I, J, self._diag)

    def evaluator(self):
        if not _own_block(self, KernelSource):
            return None
        return KernelEvaluator(self.points, self._code, self.bandwidth, self.param,
                               self.scale, self._diag, self._sq)

    def diagonal(self):
        return self._diag.copy()

    def to_dense(self, max_n=20000):
        """The whole matrix as an ndarray (refused above ``max_n`` rows). Points of
        many coordinates take the symmetric path: inner products for the lower
        triangle only, by GEMM tiles of GRAM_TILE rows (fixed: the values do not
        depend on the thread count), the kernel applied and mirrored in place --
        about half the work of reading every entry."""
        if self.points.shape[1] < GEMM_MIN_DIM or not _own_block(self, KernelSource):
            return super().to_dense(max_n)
        if self.n > max_n:
            return super().to_dense(max_n)          # the refusal
        n, X = self.n, self.points
        G = np.empty((n, n))
        for i0 in range(0, n, GRAM_TILE):
            i1 = min(n, i0 + GRAM_TILE)
            for j0 in range(0, i1, GRAM_TILE):
                j1 = min(n, j0 + GRAM_TILE)
                G[i0:i1, j0:j1] = X[i0:i1] @ X[j0:j1].T
        kernel_from_gram_lower(G, X, self._sq, self._code, self.bandwidth, self.param,
                               self.scale, self._diag,
                               effective_n_threads(self.n_threads))
        return G

    def __repr__(self):
        return (f"KernelSource(n={self.n}, d={self.points.shape[1]}, kernel={self.kernel!r}, "
                f"bandwidth={self.bandwidth:.4g}, shift={self.shift:.4g})")


def as_source(obj, where="compress"):
    """Return ``obj`` as a Source: Sources pass through, ndarrays become DenseSource,
    and any object with callable ``entries`` and ``diagonal`` and an ``n``/``shape``
    is wrapped in an EntrySource."""
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, np.ndarray) or isinstance(obj, (list, tuple)):
        return DenseSource(obj)
    if callable(getattr(obj, "entries", None)) and callable(getattr(obj, "diagonal", None)):
        n = getattr(obj, "n", None)
        if n is None and getattr(obj, "shape", None) is not None:
            n = obj.shape[0]
        if n is not None:
            batch = getattr(obj, "entries_batch", None)
            matmat = getattr(obj, "matmat", None)
            return EntrySource(int(n), obj.entries, obj.diagonal,
                               points=getattr(obj, "points", None),
                               entries_batch=batch if callable(batch) else None,
                               matmat=matmat if callable(matmat) else None)
    raise TypeError(f"The 'source' parameter of {where} must be a square ndarray or an "
                    f"object with entries(I, J) and diagonal(). Got "
                    f"{type(obj).__name__} instead.")


class SubsetSource(Source):
    """The principal submatrix K[S][:, S] of another source (``tune``'s pilots). It
    keeps the inner source's nogil evaluator, batched reads and points."""

    def __init__(self, source, S):
        self.inner = source
        self.S = np.ascontiguousarray(S, dtype=np.int64)
        self.n = int(self.S.size)
        self.points = None if source.points is None else np.asarray(source.points)[self.S]

    def _block(self, I, J):
        return self.inner._block(self.S[I], self.S[J])

    def entries_batch(self, blocks):
        return self.inner.entries_batch([(self.S[I], self.S[J]) for I, J in blocks])

    def evaluator(self):
        ev = self.inner.evaluator()
        if ev is None:
            return None
        return SubsetEvaluator(ev, self.S)

    def diagonal(self):
        return np.asarray(self.inner.diagonal())[self.S]
