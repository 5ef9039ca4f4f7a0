"""``compress``: source -> HSSMatrix (tree, neighbours, lists, skeletons, blocks)."""
import time

import numpy as np

from ._validation import check_choice, check_float, check_int, rng_from_seed
from .hss import HSSMatrix
from .interactions import build_interactions
from .neighbors import approximate_neighbors
from .skeleton import skeletonize
from .sources import CountingSource, as_source
from .tree import DISTANCES, Metric, build_tree


def _cache_blocks(source, pairs, rows_of, cols_of, rows_len, cols_len):
    """Evaluate K(rows_of(a), cols_of(b)) for every pair (a, b), grouped by a.

    Returns the flat buffer (each block row-major) and the offset of each pair."""
    sizes = np.array([rows_len(a) * cols_len(b) for a, b in pairs], dtype=np.int64)
    offsets = np.zeros(len(pairs), dtype=np.int64)
    if len(pairs):
        offsets[1:] = np.cumsum(sizes)[:-1]
    data = np.empty(int(sizes.sum()))
    if len(pairs) == 0:
        return data, offsets
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    starts = np.flatnonzero(np.r_[True, pairs[order[1:], 0] != pairs[order[:-1], 0]])
    ends = np.r_[starts[1:], order.size]
    for s, e in zip(starts, ends):
        group = order[s:e]
        a = pairs[group[0], 0]
        rows = rows_of(a)
        if rows.size == 0:
            continue
        cols_list = [cols_of(b) for b in pairs[group, 1]]
        block = source.entries(rows, np.concatenate(cols_list))
        c0 = 0
        for p, cols in zip(group, cols_list):
            w = cols.size
            data[offsets[p]:offsets[p] + sizes[p]] = block[:, c0:c0 + w].ravel()
            c0 += w
    return data, offsets


def validate_params(n, leaf_size=128, max_rank=256, tol=1e-5, neighbors=32, budget=0.0,
                    distance="angle", seed=0, where="compress"):
    """Check the compression parameters (see :func:`compress`); returns them cleaned,
    the seed as a numpy Generator."""
    leaf_size = check_int(leaf_size, "leaf_size", where, lo=2, hi=n)
    max_rank = check_int(max_rank, "max_rank", where, lo=1)
    tol = check_float(tol, "tol", where, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    neighbors = check_int(neighbors, "neighbors", where, lo=0)
    budget = check_float(budget, "budget", where, lo=0.0, hi=1.0)
    distance = check_choice(distance, "distance", where, DISTANCES)
    rng = rng_from_seed(seed, where)
    return leaf_size, max_rank, tol, neighbors, budget, distance, rng


def compress(source, leaf_size=128, max_rank=256, tol=1e-5, neighbors=32, budget=0.0,
             distance="angle", seed=0, verbose=False):
    """Compress a symmetric (SPD) matrix from its entries into an HSSMatrix.

    Parameters
    ----------
    source : ndarray (N, N) or a source with ``entries(I, J)`` and ``diagonal()``
        (:class:`hsspetsc.EntrySource`, :func:`hsspetsc.gallery.kernel_matrix`, ...).
    leaf_size : int in [2, N]
        Largest leaf (m). Larger leaves: more exact near field, fewer levels.
    max_rank : int >= 1
        Cap on a node's skeleton size (s). Nodes that need more are truncated and
        listed in ``H.stats()["truncated_nodes"]`` with the achieved error.
    tol : float in (0, 1)
        Relative tolerance of the interpolative decompositions; ranks adapt to it.
    neighbors : int >= 0
        Approximate nearest neighbours per index (k), used for the row sampling and
        the near lists. 0 disables the search (uniform sampling only).
    budget : float in [0, 1]
        Near-field share: each leaf is near about ``budget * n_leaves`` leaves,
        whose blocks are kept exactly. 0 gives plain HSS.
    distance : "angle" (default), "kernel" or "geometric"
        Metric for the tree and the neighbours. "geometric" needs ``source.points``.
    seed : int
        All randomness (sampling, randomized trees) comes from it: same seed, same
        result, bit for bit.
    verbose : bool
        Print one progress line per phase.
    """
    where = "compress"
    src = as_source(source, where)
    n = src.n
    if n < 2:
        raise ValueError(f"compress needs a matrix of order >= 2. Got N = {n}.")
    leaf_size, max_rank, tol, neighbors, budget, distance, rng = validate_params(
        n, leaf_size, max_rank, tol, neighbors, budget, distance, seed, where)
    if distance == "geometric" and src.points is None:
        raise ValueError("The 'distance' parameter of compress is 'geometric' but the "
                         "source has no points; use 'angle' or 'kernel'.")
    diag = np.asarray(src.diagonal(), dtype=np.float64)
    if diag.shape != (n,) or not np.all(np.isfinite(diag)):
        raise ValueError("The diagonal of the source must be a finite vector of length "
                         f"{n}.")
    if distance == "angle" and np.any(diag <= 0):
        i = int(np.flatnonzero(diag <= 0)[0])
        raise ValueError(f"The angle distance needs a positive diagonal, but K[{i}, {i}] = "
                         f"{diag[i]:.3g}; an SPD matrix has a positive diagonal. (A PSD "
                         f"matrix with zero rows, such as a Gauss-Newton Hessian, needs a "
                         f"small damping, e.g. GaussNewton(..., damping=1e-10), or "
                         f"distance='kernel'.)")
    if distance == "kernel" and np.any(diag < 0):
        i = int(np.flatnonzero(diag < 0)[0])
        raise ValueError(f"The kernel distance needs a non-negative diagonal, but "
                         f"K[{i}, {i}] = {diag[i]:.3g}.")

    counted = CountingSource(src)
    metric = Metric(counted, distance, diag)
    times = {}

    def phase(name, t0):
        times[name] = time.perf_counter() - t0
        if verbose:
            print(f"[hsspetsc] {name:<12} {times[name]:8.3f} s  "
                  f"(entries so far {100 * counted.count / n ** 2:.2f}% of N^2)", flush=True)

    t0 = time.perf_counter()
    tree = build_tree(n, metric, leaf_size, rng)
    phase("tree", t0)

    t0 = time.perf_counter()
    nbrs = None
    if neighbors > 0:
        nbrs = approximate_neighbors(n, metric, neighbors, leaf_size, rng)
    phase("neighbors", t0)

    t0 = time.perf_counter()
    inter = build_interactions(tree, nbrs, budget)
    phase("interactions", t0)

    t0 = time.perf_counter()
    skels = skeletonize(tree, counted, nbrs, inter, tol, max_rank, rng)
    phase("skeletons", t0)

    t0 = time.perf_counter()
    near_data, near_off = _cache_blocks(
        counted, inter.near_pairs, tree.indices, tree.indices,
        lambda a: int(tree.node_size[a]), lambda b: int(tree.node_size[b]))
    far_data, far_off = _cache_blocks(
        counted, inter.far_pairs, lambda a: skels.skel[a], lambda b: skels.skel[b],
        lambda a: int(skels.rank[a]), lambda b: int(skels.rank[b]))
    # Sibling couplings K(skel l, skel r) that are not far pairs (budget > 0): the
    # factorization of the HSS part needs one per sibling pair.
    far_set = {(int(a), int(b)) for a, b in inter.far_pairs}
    sib_pairs = np.array([(l, l + 1) for l in range(1, tree.n_nodes, 2)
                          if (l, l + 1) not in far_set], dtype=np.int64).reshape(-1, 2)
    sib_data, sib_off = _cache_blocks(
        counted, sib_pairs, lambda a: skels.skel[a], lambda b: skels.skel[b],
        lambda a: int(skels.rank[a]), lambda b: int(skels.rank[b]))
    phase("caching", t0)
    times["total"] = sum(times.values())

    params = {"leaf_size": leaf_size, "max_rank": max_rank, "tol": tol,
              "neighbors": neighbors, "budget": budget, "distance": distance,
              "seed": seed if isinstance(seed, int) else None}
    info = {"entries_fraction": counted.count / float(n) ** 2,
            "entries_evaluated": int(counted.count),
            "neighbor_recall": None if nbrs is None else nbrs.recall,
            "neighbor_iterations": 0 if nbrs is None else nbrs.iterations,
            "time": times}
    H = HSSMatrix(tree, inter, skels, near_data, near_off, far_data, far_off, params, info,
                  sibling=(sib_pairs, sib_data, sib_off))
    if verbose:
        print(repr(H), flush=True)
    return H
