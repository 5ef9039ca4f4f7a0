"""Near and far interaction lists.

Near: each leaf is near itself; with ``budget > 0`` leaves vote for the leaves that
hold their indices' neighbours (weight 1/(dist + eps), floats), and each leaf takes
leaves in vote order until it has ``ceil(budget * n_leaves)`` (if the votes run out,
the leaves closest in the tree fill the rest); the relation is then symmetrized. ``budget = 0`` is plain HSS.

Far: a symmetric dual traversal from (root, root), one level at a time. A pair of
same-level nodes is admissible (far) when no leaf under one is near a leaf under the
other; an inadmissible pair splits into its four child pairs. Every off-near block
of K is covered by exactly one far pair, and common far nodes of siblings end at
their parent by construction. Pairs are stored once (a < b).
"""
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    near_pairs: np.ndarray   # (p, 2) leaf node ids, a <= b, diagonal included
    far_pairs: np.ndarray    # (q, 2) node ids, a < b, same level
    near_leaves: sp.csr_matrix   # (n_leaves, n_leaves) boolean, symmetric


def _top_votes(V, nl, want):
    """Per row of the vote matrix V: the ``want`` columns with the most votes (ties:
    lower column), the diagonal left out. Returns (rows, cols)."""
    coo = V.tocoo()
    r, c, v = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    off = r != c
    r, c, v = r[off], c[off], v[off]
    order = np.lexsort((c, -v, r))
    r, c = r[order], c[order]
    start = np.searchsorted(r, np.arange(nl))
    rank = np.arange(r.size) - start[r]
    keep = rank < want
    return r[keep], c[keep]


def _fill_by_tree(rows, cols, nl, want):
    """Rows with fewer than ``want`` chosen leaves get the leaves closest in the tree
    (deepest common ancestor first: c = b XOR t for t = 1, 2, ...), skipping the
    chosen ones."""
    count = np.bincount(rows, minlength=nl)
    short = np.flatnonzero(count < want)
    if short.size == 0:
        return rows, cols
    t = np.arange(1, min(nl, want + int(count[short].max()) + 1), dtype=np.int64)
    keys = np.sort(rows * nl + cols)
    add_r, add_c = [rows], [cols]
    step = max(1, (1 << 22) // t.size)          # rows per chunk: arrays of ~4M entries
    for s0 in range(0, short.size, step):
        sh = short[s0:s0 + step]
        need = want - count[sh]
        cand = sh[:, None] ^ t[None, :]
        ok = ~np.isin(sh[:, None] * nl + cand, keys)
        ok &= np.cumsum(ok, axis=1) <= need[:, None]
        add_r.append(np.broadcast_to(sh[:, None], cand.shape)[ok])
        add_c.append(cand[ok])
    return np.concatenate(add_r), np.concatenate(add_c)


def near_leaf_matrix(tree, nbrs, budget):
    """Symmetric boolean (n_leaves x n_leaves) near relation."""
    nl = tree.n_leaves
    eye = sp.identity(nl, dtype=bool, format="csr")
    target = max(1, int(math.ceil(budget * nl)))
    if target <= 1 or nbrs is None or nbrs.index.shape[1] == 0:
        return eye
    leaf_of = tree.leaf_of_original()
    k = nbrs.index.shape[1]
    valid = nbrs.index.ravel() >= 0
    rows = np.repeat(leaf_of, k)[valid]
    cols = leaf_of[nbrs.index.ravel()[valid]]
    w = 1.0 / (nbrs.dist.ravel()[valid] + 1e-12)
    V = sp.csr_matrix((w, (rows, cols)), shape=(nl, nl))
    V.sum_duplicates()
    r, c = _top_votes(V, nl, target - 1)
    r, c = _fill_by_tree(r, c, nl, target - 1)
    r = np.r_[np.arange(nl), r]
    c = np.r_[np.arange(nl), c]
    N = sp.csr_matrix((np.ones(r.size, dtype=bool), (r, c)), shape=(nl, nl))
    N = (N + N.T).astype(bool).tocsr()
    N.sort_indices()
    return N


def far_pairs(tree, near):
    """Admissible pairs by the symmetric dual traversal; returns (far, leaf near pairs)."""
    L = tree.n_levels
    if L == 0:
        return np.zeros((0, 2), np.int64), np.array([[0, 0]], np.int64)
    coo = near.tocoo()
    nr, nc = coo.row.astype(np.int64), coo.col.astype(np.int64)
    pairs = np.zeros((1, 2), dtype=np.int64)        # positions within the level
    far = []
    kids = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.int64)
    for lev in range(1, L + 1):
        c = (2 * pairs[:, None, :] + kids[None, :, :]).reshape(-1, 2)
        shift = L - lev
        near_keys = np.unique((nr >> shift) * (1 << lev) + (nc >> shift))
        is_near = np.isin(c[:, 0] * (1 << lev) + c[:, 1], near_keys)
        first = (1 << lev) - 1
        f = c[~is_near]
        f = f[f[:, 0] < f[:, 1]] + first
        far.append(f)
        pairs = c[is_near]
    first_leaf = (1 << L) - 1
    near_pairs = pairs[pairs[:, 0] <= pairs[:, 1]] + first_leaf
    return np.concatenate(far).astype(np.int64), near_pairs.astype(np.int64)


def build_interactions(tree, nbrs, budget):
    near = near_leaf_matrix(tree, nbrs, budget)
    far, near_pairs = far_pairs(tree, near)
    return Interactions(near_pairs=near_pairs, far_pairs=far, near_leaves=near)
