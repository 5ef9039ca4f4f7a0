"""Parameter and array checks, done once in Python before any kernel runs.

Messages follow one template: "The 'leaf_size' parameter of compress must be an
int in the range [2, 4096]. Got 1 instead."
"""
import numbers
import os
import warnings

import numpy as np


def _fmt_range(lo, hi, lo_open, hi_open):
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    lo_s = "-inf" if lo is None else repr(lo)
    hi_s = "inf" if hi is None else repr(hi)
    return f"{left}{lo_s}, {hi_s}{right}"


def check_int(value, name, where, lo=None, hi=None):
    """Return ``value`` as int, or raise TypeError/ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"The '{name}' parameter of {where} must be an int in the range "
                        f"{_fmt_range(lo, hi, False, False)}. Got {value!r} instead.")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"The '{name}' parameter of {where} must be an int in the range "
                         f"{_fmt_range(lo, hi, False, False)}. Got {value!r} instead.")
    return value


def check_float(value, name, where, lo=None, hi=None, lo_open=False, hi_open=False):
    """Return ``value`` as a finite float inside the interval, or raise."""
    rng = _fmt_range(lo, hi, lo_open, hi_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The '{name}' parameter of {where} must be a float in the range "
                        f"{rng}. Got {value!r} instead.")
    value = float(value)
    bad = not np.isfinite(value)
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        raise ValueError(f"The '{name}' parameter of {where} must be a float in the range "
                         f"{rng}. Got {value!r} instead.")
    return value


def check_choice(value, name, where, choices):
    """Return ``value`` if it is one of ``choices`` (strings), or raise ValueError."""
    if not isinstance(value, str) or value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"The '{name}' parameter of {where} must be one of {opts}. "
                         f"Got {value!r} instead.")
    return value


def check_finite(array, name, where):
    """Raise ValueError when ``array`` holds NaN or Inf."""
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"The '{name}' parameter of {where} contains {bad} NaN or Inf "
                         f"value(s).")


def as_float_array(value, name, where, ndim=None, warn_precision=False):
    """Convert to a C-contiguous float64 array; refuse complex, object and strings.
    ``warn_precision``: say so when float32/float16 data is widened (the matrix
    data of the user, not every vector)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"The '{name}' parameter of {where} must be a real numeric array. "
                        f"Got dtype {arr.dtype} instead.")
    if warn_precision:
        warn_low_precision(arr.dtype, name, where)
    if ndim is not None and arr.ndim not in np.atleast_1d(ndim):
        raise ValueError(f"The '{name}' parameter of {where} must have "
                         f"{' or '.join(str(d) for d in np.atleast_1d(ndim))} dimension(s). "
                         f"Got shape {arr.shape} instead.")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_index_array(value, n, name, where):
    """Convert to a 1-D int64 array of indices in [0, n)."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"The '{name}' parameter of {where} must hold integer indices. "
                        f"Got dtype {arr.dtype} instead.")
    arr = np.ascontiguousarray(arr.ravel(), dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"The '{name}' parameter of {where} must hold indices in "
                         f"[0, {n}). Got values from {arr.min()} to {arr.max()}.")
    return arr


def rng_from_seed(seed, where="hsspetsc"):
    """numpy Generator from an int seed (or pass a Generator through)."""
    if isinstance(seed, np.random.Generator):
        return seed
    seed = check_int(seed, "seed", where, lo=0)
    return np.random.default_rng(seed)


def as_block(W, n, name, where):
    """A right-hand side of shape (n,) or (n, k) as a float64 (n, k) array; returns
    (the original array, the 2-D view, whether the input was a vector)."""
    W = as_float_array(W, name, where, ndim=(1, 2))
    if W.shape[0] != n:
        raise ValueError(f"The '{name}' parameter of {where} must have {n} rows. Got shape "
                         f"{W.shape} instead.")
    check_finite(W, name, where)
    return W, W.reshape(n, -1), W.ndim == 1


def add_to_diagonal(block, I, J, value):
    """block[a, b] += value wherever I[a] == J[b] (the diagonal entries of K[I][:, J])."""
    ii, jj = np.nonzero(np.asarray(I)[:, None] == np.asarray(J)[None, :])
    if ii.size:
        block[ii, jj] += value
    return block


def warn_low_precision(dtype, name, where):
    """A UserWarning when float data narrower than float64 is widened."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize < 8:
        warnings.warn(f"The '{name}' parameter of {where} is {dtype}; hsspetsc computes "
                      f"in float64 and converted it (a float64 copy; its rounding stays "
                      f"that of {dtype}, about {np.finfo(dtype).eps:.0e}).", UserWarning,
                      stacklevel=4)


def check_result(out, inp, where):
    """A finite input must give a finite result: raise FloatingPointError (with the
    input's largest entry) when it overflowed instead of returning Inf/NaN."""
    if not np.isfinite(out).all():
        big = float(np.max(np.abs(inp))) if inp.size else 0.0
        raise FloatingPointError(f"{where}: the result overflowed (Inf/NaN) although the "
                                 f"input is finite (its largest entry is {big:.3g}); "
                                 f"scale the input down.")


def check_writable(path, what):
    """Raise now, before any work, if ``path`` cannot be written (its folder is
    missing or read-only, or it is a folder)."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise ValueError(f"The {what} path {path} is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise ValueError(f"The {what} path {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK) or (os.path.exists(path)
                                          and not os.access(path, os.W_OK)):
        raise ValueError(f"The {what} path {path} is not writable.")
