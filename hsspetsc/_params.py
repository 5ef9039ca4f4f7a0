"""The construction parameters, specified once.

Both front doors (``compress`` from entries, ``compress_sketch`` from products) and
the PETSc options (``-pc_hss_*``) take their defaults, types, ranges and help
text from ``SPEC``; ``check`` validates a set of values once, with the message
template of :mod:`hsspetsc._validation`.

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
"""
from dataclasses import dataclass

import numpy as np

from ._validation import as_index_array, check_choice, check_float, check_int
from .tree import DISTANCES

ORDERS = ("natural", "angle", "geometric")


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
                 "node: see hsspetsc._params)", lo=0.0, hi=1.0, lo_open=True,
                 hi_open=True, sketch_default=1e-4),
    "neighbors": Param(int, 32, "approximate nearest neighbours per index (k); 0: "
                       "uniform row sampling only", lo=0),
    "budget": Param(float, 0.0, "near-field share: each leaf keeps about budget * "
                    "leaves exact blocks (0: plain HSS)", lo=0.0, hi=1.0),
    "distance": Param(str, "angle", "metric of the tree and the neighbours",
                      choices=DISTANCES),
    "seed": Param(int, 0, "all randomness; same seed, same result bit for bit", lo=0),
    "samples": Param(int, 256, "products K @ Omega of compress_sketch", lo=1, hi="N"),
    "probes": Param(int, 32, "exact rows (compress) or extra products (compress_sketch) "
                    "for the error estimate; 0: none", lo=0, sketch_default=8),
}


def default_memory(n=None):
    """A quarter of the machine's physical memory in bytes (1 GiB if unknown), and
    never more than twice the dense matrix (16 N^2, or 64 MiB for small N): past
    that compression has failed (full-rank nodes store their columns about twice)."""
    import os
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
    cleaned. ``max_rank=None`` is passed through (the sketch's default)."""
    out = {}
    for name, value in values.items():
        p = SPEC[name]
        if name in ("max_rank", "memory") and value is None:
            out[name] = None
            continue
        hi = n if p.hi == "N" else p.hi
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
                                    lo_open=p.lo_open, hi_open=p.hi_open)
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
