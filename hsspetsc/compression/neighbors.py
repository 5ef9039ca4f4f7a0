"""Approximate nearest neighbours under the compression metric.

Randomized projection trees (random p, q per split, median split; built level by
level like the cluster tree), exhaustive search inside each leaf, merged into the
running k best of every index; stop when the recall measured on a fixed sample of
indices reaches the target, or after ``max_iter`` trees. Neighbours exclude the
index itself. The leaf distances are read a memory-bounded chunk of leaves at a
time and merged in one Cython ``prange`` over the chunk's leaves; each tree draws
from its own random key, so the result does not depend on the thread count.
"""
from dataclasses import dataclass

import numpy as np

from ..kernels.compression import merge_leaf_neighbors
from ..util.blocks import chunks
from .tree import PHASE_ANN, PHASE_CHECK, build_tree, phase_key

CHUNK_BYTES = 256 * 2 ** 20      # distances held at once by the leaf search


@dataclass(frozen=True)
class Neighbors:
    """k approximate nearest neighbours of every original index."""

    index: np.ndarray     # (n, k) int64, original indices, closest first (-1: none)
    dist: np.ndarray      # (n, k) float64
    recall: float         # measured on a sample of indices
    iterations: int       # randomized trees used


def _recall(index, dist, sample, exact_kth):
    """Share of the found neighbours of ``sample`` within the exact k-th distance."""
    found = dist[sample]
    ok = found <= exact_kth[:, None] * (1 + 1e-12) + 1e-300
    return float(np.mean(ok & (index[sample] >= 0)))


def approximate_neighbors(n, metric, k, leaf_size, seed=0, target_recall=0.8,
                          max_iter=10, n_check=32, mine=None, total=None):
    """Return :class:`Neighbors` with ``min(k, n - 1)`` neighbours per index.

    ``mine`` (boolean (n,), optional): only these indices' neighbours are needed
    (a rank of a distributed construction): the leaf search runs only in the leaves
    that hold one of them, and their lists are those of the full search, bit for
    bit; the other rows stay incomplete. The recall is then measured on the sampled
    indices in ``mine`` and summed over the callers by ``total`` (a callable
    summing a float array over the ranks), so every rank stops alike."""
    k = min(k, n - 1)
    idx = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf)
    # exact neighbours of a small sample, to measure the recall
    check = np.random.default_rng(phase_key(seed, PHASE_CHECK))
    sample = np.sort(check.choice(n, min(n, n_check), replace=False)).astype(np.int64)
    if mine is not None:
        sample = sample[mine[sample]]
    d_exact = metric(sample, np.arange(n, dtype=np.int64)) if sample.size else \
        np.zeros((0, n))
    d_exact[np.arange(sample.size), sample] = np.inf
    exact_kth = np.partition(d_exact, k - 1, axis=1)[:, k - 1]
    ann_leaf = min(n, max(leaf_size, 2 * k + 2))
    recall, it = 0.0, 0
    for it in range(1, max_iter + 1):
        tree = build_tree(n, metric, ann_leaf, randomized=True,
                          key=phase_key(seed, PHASE_ANN, it))
        off = tree.node_off[tree.first_leaf:]
        size = tree.node_size[tree.first_leaf:]
        if mine is not None:
            # the leaves holding one of mine (the rest cannot change their lists)
            held = np.add.reduceat(mine[tree.perm].astype(np.int64), off) > 0
            off, size = off[held], size[held]
        for c0, c1 in chunks(size * size, CHUNK_BYTES // 8):
            lo, sz = off[c0:c1], size[c0:c1]
            D, Doff = metric.read(lo, sz, tree.perm, lo, sz, tree.perm)
            failed = np.zeros(1, dtype=np.int64)
            merge_leaf_neighbors(D, Doff, lo, sz, tree.perm, idx, dist, failed,
                                 metric.n_threads)
            if failed[0]:
                raise MemoryError("hsspetsc: out of memory in the neighbour search.")
        if mine is None:
            recall = _recall(idx, dist, sample, exact_kth)
        else:
            found = dist[sample] <= exact_kth[:, None] * (1 + 1e-12) + 1e-300
            ok = float(np.sum(found & (idx[sample] >= 0)))      # a count: sums exactly
            ok, cnt = total(np.array([ok, sample.size * k], dtype=np.float64))
            recall = float(ok / cnt) if cnt else 1.0
        if recall >= target_recall:
            break
    return Neighbors(index=idx, dist=dist, recall=recall, iterations=it)
