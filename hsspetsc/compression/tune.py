"""``tune``: compression parameters chosen from cheap pilots.

The hyper-parameters that matter most are the leaf size m (BLAS efficiency of the
leaf blocks against the number of levels), the neighbours k (how well the sampled
rows see the off-diagonal blocks) and the near-field budget (what the ranks cannot
capture); ``tol`` is the user's, and ranks are adaptive (``max_rank=None``). Each
candidate is compressed on a pilot: the principal submatrix of one node of the
cluster tree with about N/8 indices (the top three splits of the real tree, so
the pilot has the density and the local structure of the whole; a random subset
would be sparser and easier). Its time and memory are scaled to N (time by N/n
times the ratio of tree depths, memory by N/n), its error is its own estimate. The choice: the fastest candidate whose pilot estimate
meets tol (within ``slack``) and whose predicted memory and time fit the budgets;
if none meets tol, the most accurate one. The pilots cost about as much as one
compression of the whole matrix.
"""
import math
import time as _time
import warnings

import numpy as np

from ..matrix.layout import tree_depth
from ..sources import SubsetSource, as_source
from ..util.validation import check_float, check_int
from . import params as _params
from .compress import compress
from .tree import PHASE_CHECK, Metric, build_tree, phase_key

LEAF_SIZES = (64, 128, 256)
NEIGHBORS = (8, 32)
BUDGETS = (0.02, 0.05)


class TunedParams(dict):
    """Keyword arguments for :func:`hsspetsc.compress` (a dict), with ``report``:
    one row per candidate (parameters, pilot seconds, predicted seconds and bytes
    for the whole matrix, pilot error estimate, chosen)."""

    def __init__(self, params, report, pilot_n, n):
        super().__init__(params)
        self.report = report
        self.pilot_n = pilot_n
        self.n = n

    def table(self):
        lines = [f"tune: pilots of {self.pilot_n} of {self.n} indices; predicted for N",
                 f"{'leaf':>5} {'nbrs':>5} {'budget':>6} {'pilot s':>8} {'pred s':>8} "
                 f"{'pred MB':>9} {'est error':>9}  chosen"]
        for r in self.report:
            lines.append(f"{r['leaf_size']:>5} {r['neighbors']:>5} {r['budget']:>6.2f} "
                         f"{r['pilot_s']:>8.2f} {r['predicted_s']:>8.2f} "
                         f"{r['predicted_bytes'] / 1e6:>9.1f} {r['error_estimate']:>9.1e}  "
                         f"{'<-' if r['chosen'] else ''}")
        return "\n".join(lines)

    def __repr__(self):
        return f"TunedParams({dict(self)!r})"


def tune(source, tol=1e-5, memory=None, time=None, pilot=None, seed=0, slack=1.0,
         verbose=False):
    """Choose ``compress`` parameters for ``source`` at ``tol`` from pilots.

    Parameters
    ----------
    source : anything :func:`hsspetsc.compress` takes
    tol : float in (0, 1)
        The target (see :mod:`hsspetsc.compression.params`).
    memory : float or None
        Bytes allowed for H~ (default: as for compress).
    time : float or None
        Seconds allowed for the compression, predicted (default: no limit).
    pilot : int or None
        Indices per pilot (default max(1024, N // 8), at most N).
    seed : int
        The pilots' subsets and the compression's seed.
    slack : float >= 1
        A pilot meets tol when its estimate is at most slack * tol (default 1: a
        pilot misses the far field of the rest of the matrix, so its estimate is
        optimistic, and the whole compression lands within a few times of tol).
    verbose : bool
        Print the trade-off table.

    Returns
    -------
    TunedParams
        Use it as ``hsspetsc.compress(source, **params)``; ``params.report`` and
        ``params.table()`` give the trade-off per candidate.
    """
    where = "tune"
    src = as_source(source, where)
    n = src.n
    p = _params.check(n, where, tol=tol, seed=seed, memory=memory)
    memory = p["memory"] if p["memory"] is not None else _params.default_memory(n)
    if time is not None:
        time = check_float(time, "time", where, lo=0.0, lo_open=True)
    slack = check_float(slack, "slack", where, lo=1.0)
    n_p = min(n, max(1024, n // 8)) if pilot is None else check_int(pilot, "pilot",
                                                                    where, lo=2, hi=n)
    sub = SubsetSource(src, _pilot_indices(src, n_p, p["seed"])) if n_p < n else src
    n_p = sub.n
    candidates = [dict(leaf_size=m, neighbors=k, budget=0.0)
                  for m in LEAF_SIZES if m <= max(2, n_p // 4) for k in NEIGHBORS]
    if not candidates:
        candidates = [dict(leaf_size=max(2, n_p // 4), neighbors=min(8, n_p - 1),
                           budget=0.0)]
    report = [_pilot(sub, c, p, n, n_p, memory) for c in candidates]
    if not any(r["error_estimate"] <= slack * p["tol"] for r in report):
        # the ranks alone do not get there: add a near field to the best leaf size
        best = min(report, key=lambda r: r["error_estimate"])
        report += [_pilot(sub, dict(leaf_size=best["leaf_size"],
                                    neighbors=max(best["neighbors"], 32), budget=b),
                          p, n, n_p, memory) for b in BUDGETS]
    fits = [r for r in report if r["predicted_bytes"] <= memory
            and (time is None or r["predicted_s"] <= time)] or report
    good = [r for r in fits if r["error_estimate"] <= slack * p["tol"]]
    chosen = (min(good, key=lambda r: r["predicted_s"]) if good
              else min(fits, key=lambda r: r["error_estimate"]))
    chosen["chosen"] = True
    params = dict(leaf_size=chosen["leaf_size"], neighbors=chosen["neighbors"],
                  budget=chosen["budget"], tol=p["tol"], max_rank=None, memory=memory,
                  seed=p["seed"])
    out = TunedParams(params, report, n_p, n)
    if not good:
        warnings.warn(f"tune: no candidate met tol = {p['tol']:.1e} on the pilots (best "
                      f"estimate {chosen['error_estimate']:.1e}); the most accurate one "
                      f"is returned.", RuntimeWarning, stacklevel=2)
    if verbose:
        print(out.table(), flush=True)
    return out


def _pilot_indices(src, n_p, seed):
    """The indices of a cluster-tree node of about n_p indices: the top splits of
    the angle tree (the kernel tree for a zero diagonal), a level at a time."""
    n = src.n
    diag = np.asarray(src.diagonal(), dtype=np.float64)
    kind = "angle" if np.all(diag > 0) else "kernel"
    depth = max(0, int(math.floor(math.log2(n / n_p))))
    tree = build_tree(n, Metric(src, kind, diag), int(math.ceil(n / 2 ** depth)), seed)
    a = tree.first_leaf + int(np.random.default_rng(phase_key(seed, PHASE_CHECK, 7))
                              .integers(tree.n_leaves))
    return np.sort(tree.indices(a))


def _pilot(sub, cand, p, n, n_p, memory):
    """Compress the pilot with one candidate; scale its cost to N."""
    t0 = _time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        H = compress(sub, tol=p["tol"], max_rank=None, memory=memory * n_p / n,
                     seed=p["seed"], spd=False, probes=min(64, n_p), verbose=False,
                     **cand)
    dt = _time.perf_counter() - t0
    s = H.stats()
    depth = max(1, tree_depth(n, cand["leaf_size"]))
    depth_p = max(1, tree_depth(n_p, cand["leaf_size"]))
    return dict(cand, pilot_s=dt, predicted_s=dt * (n / n_p) * depth / depth_p,
                predicted_bytes=s["stored_bytes"] * n / n_p,
                error_estimate=float(s["error_estimate"]), chosen=False,
                rank_max=s["rank_max"])
