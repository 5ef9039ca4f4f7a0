"""Approximate nearest neighbours under the compression metric.

Randomized projection trees (random p, q per split, median split), exhaustive
search inside each leaf, merge into the running k best; stop when the recall
measured on a fixed sample of indices reaches the target, or after ``max_iter``
trees. Neighbours exclude the index itself.
"""
from dataclasses import dataclass

import numpy as np

from .tree import build_tree


@dataclass
class Neighbors:
    """k approximate nearest neighbours of every original index."""

    index: np.ndarray     # (n, k) int64, original indices, closest first
    dist: np.ndarray      # (n, k) float64
    recall: float         # measured on a sample of indices
    iterations: int       # randomized trees used


def _merge(cur_idx, cur_d, new_idx, new_d, k):
    """Merge candidate lists row-wise, drop duplicates, keep the k closest."""
    ci = np.concatenate([cur_idx, new_idx], axis=1)
    cd = np.concatenate([cur_d, new_d], axis=1)
    o = np.argsort(ci, axis=1, kind="stable")
    ci = np.take_along_axis(ci, o, axis=1)
    cd = np.take_along_axis(cd, o, axis=1)
    dup = np.zeros(ci.shape, dtype=bool)
    dup[:, 1:] = ci[:, 1:] == ci[:, :-1]
    cd[dup] = np.inf
    o = np.argsort(cd, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ci, o, axis=1), np.take_along_axis(cd, o, axis=1)


def _recall(index, dist, sample, exact_kth):
    """Share of the found neighbours of ``sample`` that are within the exact k-th distance."""
    found = dist[sample]
    ok = found <= exact_kth[:, None] * (1 + 1e-12) + 1e-300
    return float(np.mean(ok & (index[sample] >= 0)))


def approximate_neighbors(n, metric, k, leaf_size, rng, target_recall=0.8, max_iter=10,
                          n_check=32):
    """Return :class:`Neighbors` with ``k`` neighbours per index (k < n)."""
    k = min(k, n - 1)
    idx = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf)
    # Exact neighbours of a small sample, to measure the recall.
    sample = rng.choice(n, min(n, n_check), replace=False)
    d_exact = metric(sample, np.arange(n))
    d_exact[np.arange(sample.size), sample] = np.inf
    exact_kth = np.partition(d_exact, k - 1, axis=1)[:, k - 1]
    ann_leaf = min(n, max(leaf_size, 2 * k + 2))
    recall, it = 0.0, 0
    for it in range(1, max_iter + 1):
        tree = build_tree(n, metric, ann_leaf, rng, randomized=True)
        for a in range(tree.first_leaf, tree.n_nodes):
            members = tree.indices(a)
            D = metric(members, members)
            np.fill_diagonal(D, np.inf)
            cand = np.broadcast_to(members, D.shape)
            idx[members], dist[members] = _merge(idx[members], dist[members], cand, D, k)
        recall = _recall(idx, dist, sample, exact_kth)
        if recall >= target_recall:
            break
    return Neighbors(index=idx, dist=dist, recall=recall, iterations=it)
