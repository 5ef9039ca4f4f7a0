"""The construction parameters, specified once.

Both front doors (``compress`` from entries, ``compress_sketch`` from products) and
the PETSc options (``-pc_hss_*``) take their defaults, types, ranges and help
text from ``SPEC``; ``check`` validates a set of values once, with the message
template of :mod:`hsspetsc.util.validation`.

What ``tol`` means (both paths): the target relative error of H~ in the Frobenius
norm, enforced node by node. Every node keeps the smallest rank k whose dropped
part |R[k:, k:]|_F (R from the pivoted QR of its block) is at most ``tol`` times
|R_11|, the largest pivot (a lower estimate of the block's 2-norm, so the test is
strict: a Frobenius norm against a spectral one). The block is the node's
off-diagonal block row as the construction sees it: sampled rows K(rows, cols)
from entries, or the sketch K(rest, cols) Omega from products. Each entry of K is
represented through at most ``levels`` such blocks, so the errors could add up to
about sqrt(levels) * tol relative; measured, |K - H~|_F / |K|_F and the row-wise
matvec error eps2 stay within a small factor of tol (tests: 1e-2 to 1e-8, both
paths). Nodes capped by ``max_rank`` miss it; they are listed in
``stats()["truncated_nodes"]`` with the relative size of what they dropped.

Shift-aware accuracy (``shift=lam``): most users solve with lam I + K, never with K
alone, and the directions of K far below lam do not change that answer. With a
shift, ``tol`` is a share c of it: the target is |K - H~|_2 <= c lam. Why that is
the right measure: K is PSD, so for every x, |x^T (K - H~) x| <= c lam |x|^2 <=
c x^T (lam I + K) x, hence x^T (lam I + H~) x lies within a factor 1 -+ c of
x^T (lam I + K) x; the eigenvalues of (lam I + H~)^-1 (lam I + K) lie in
[1 / (1 + c), 1 / (1 - c)] (c < 1): lam I + H~ preconditions lam I + K with a
condition number at most (1 + c) / (1 - c) (3 at c = 1/2), and a direct solve with
it is off by at most c / (1 - c) in the (lam I + K)-norm. c >= 1 is allowed (a
coarser, cheaper H~ for a preconditioner, or for predictions that tolerate it)
but carries no such bound. Node by node: each node keeps the smallest rank whose
largest dropped column norm |R_kk| (the pivot, a lower estimate of the 2-norm of
what is dropped) is at most c lam SHIFT_SHARE / sqrt(levels), times sqrt(rows
sampled / rows of the block row) (a sample of the rows holds about that share of
the block row's norm; for the sketch, whose columns are sums of s rows, sqrt(s)).
The 1 / sqrt(levels): every entry of K is represented through one ID per level,
and the levels' errors add like independent terms. SHIFT_SHARE = 0.1 is
calibrated, not derived: the pivot underestimates the 2-norm of what a node drops,
an ID's error enters a block row and its transposed block column, and the errors
of the nodes of one level add up; with 0.1, |K - H~|_2 / lam stayed below c on
every kernel measured (3-D to 784-D, lam from 1e-3 to 1 times the largest
eigenvalue's scale, c from 0.1 to 3). Measured, |K - H~|_2 /
lam stays below c on the kernels of the tests; ``stats()["shift_error"]`` reports
the estimate on every H~ built with a shift, and a miss is warned about.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..util.validation import as_index_array, check_choice, check_float, check_int
from .tree import DISTANCES

ORDERS = ("natural", "angle", "geometric")
SHIFT_SHARE = 0.1        # see the module docstring (shift-aware accuracy)
SHIFT_TOL = 0.5          # default tol with a shift: condition number <= 3
SHIFT_TOL_MAX = 100.0    # with a shift, tol may exceed 1 (no bound then)


def shift_thresholds(tol, shift, levels, row_share):
    """The absolute pivot threshold of each node's ID for a shift-aware H~ (see the
    module docstring), or an empty array (relative tol) without a shift.
    ``row_share``: per node, sqrt(sampled rows / rows of its block row), or sqrt(s)
    for the sketch."""
    if not shift:
        return np.zeros(0)
    share = SHIFT_SHARE / np.sqrt(max(int(levels), 1))
    return np.ascontiguousarray(tol * shift * share * np.asarray(row_share, np.float64))


@dataclass(frozen=True)
class Param:
    kind: type            # int, float or str
    default: object       # for compress (entries)
    help: str
    lo: object = None
    hi: object = None     # "N": the order of the matrix
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    sketch_default: object = "same"


SPEC = {
    "leaf_size": Param(int, 128, "largest leaf (m); leaf blocks are kept exactly",
                       lo=2, hi="N"),
    "max_rank": Param(int, None, "cap on a node's rank (s); None: ranks grow until tol "
                      "is met, within the memory budget; capped nodes are reported",
                      lo=1),
    "memory": Param(float, None, "budget in bytes for H~ with max_rank=None (default: a "
                    "quarter of the machine's memory, at most twice the dense matrix); "
                    "it caps the ranks", lo=0.0, lo_open=True),
    "spd": Param(bool, True, "add the smallest diagonal compensation that makes H~ "
                 "positive semi-definite, certified by a factorization (an SPD source "
                 "then factors at every positive shift)"),
    "tol": Param(float, 1e-5, "target relative error of H~ (Frobenius norm, node by "
                 "node: see hsspetsc.compression.params)", lo=0.0, hi=1.0, lo_open=True,
                 hi_open=True, sketch_default=1e-4),
    "neighbors": Param(int, 32, "approximate nearest neighbours per index (k); 0: "
                       "uniform row sampling only", lo=0),
    "budget": Param(float, 0.0, "near-field share: each leaf keeps about budget * "
                    "leaves exact blocks (0: plain HSS)", lo=0.0, hi=1.0),
    "distance": Param(str, "angle", "metric of the tree and the neighbours",
                      choices=DISTANCES),
    "seed": Param(int, 0, "all randomness; same seed, same result bit for bit", lo=0),
    "samples": Param(int, 256, "products K @ Omega of compress_sketch", lo=1, hi="N"),
    "shift": Param(float, None, "the shift lam H~ will be used with (lam I + H~); tol "
                   "is then a share c of it: |K - H~|_2 <= c lam (see hsspetsc.compression.params)",
                   lo=0.0, lo_open=True),
    "probes": Param(int, 32, "exact rows (compress) or extra products (compress_sketch) "
                    "for the error estimate; 0: none", lo=0, sketch_default=8),
}


def default_memory(n=None):
    """A quarter of the machine's physical memory in bytes (1 GiB if unknown), and
    never more than twice the dense matrix (16 N^2, or 64 MiB for small N): past
    that compression has failed (full-rank nodes store their columns about twice)."""
    try:
        mem = 0.25 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = float(2 ** 30)
    return mem if n is None else min(mem, max(16.0 * float(n) ** 2, 64.0 * 2 ** 20))


def default(name, path="entries"):
    p = SPEC[name]
    if path == "sketch" and p.sketch_default != "same":
        return p.sketch_default
    return p.default


def check(n, where, **values):
    """Validate ``values`` (names of SPEC) for a matrix of order n; returns them
    cleaned. ``max_rank=None`` is passed through (the sketch's default), so is
    ``shift=None`` (relative tol). With a shift, ``tol=None`` means SHIFT_TOL and
    tol may be as large as SHIFT_TOL_MAX."""
    out = {}
    shifted = values.get("shift") is not None
    if "tol" in values and values["tol"] is None:
        values = dict(values, tol=SHIFT_TOL if shifted else SPEC["tol"].default)
    for name, value in values.items():
        p = SPEC[name]
        if name in ("max_rank", "memory", "shift") and value is None:
            out[name] = None
            continue
        hi = n if p.hi == "N" else p.hi
        hi_open = p.hi_open
        if name == "tol" and shifted:
            hi, hi_open = SHIFT_TOL_MAX, False
        if name == "leaf_size" and value == p.default and n < value:
            value = max(n, 2)       # the default on a small matrix: one leaf
        if p.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"The '{name}' parameter of {where} must be a bool. Got "
                                f"{value!r} instead.")
            out[name] = bool(value)
        elif p.kind is int:
            out[name] = check_int(value, name, where, lo=p.lo, hi=hi)
        elif p.kind is float:
            out[name] = check_float(value, name, where, lo=p.lo, hi=hi,
                                    lo_open=p.lo_open, hi_open=hi_open)
        else:
            out[name] = check_choice(value, name, where, p.choices)
    return out


def check_order(order, n, where):
    """``order`` of compress_sketch: a name of ORDERS, or a permutation (returned as
    an int64 array)."""
    if isinstance(order, str):
        return check_choice(order, "order", where, ORDERS)
    if np.ndim(order) != 1:
        raise ValueError(f"The 'order' parameter of {where} must be one of "
                         f"{', '.join(map(repr, ORDERS))} or a permutation of "
                         f"range({n}) (1-D). Got shape {np.shape(order)} instead.")
    perm = as_index_array(order, n, "order", where)
    if perm.size != n or np.unique(perm).size != n:
        raise ValueError(f"The 'order' parameter of {where} must be one of "
                         f"{', '.join(map(repr, ORDERS))} or a permutation of "
                         f"range({n}). Got an array of {perm.size} indices with "
                         f"{np.unique(perm).size} distinct.")
    return perm
