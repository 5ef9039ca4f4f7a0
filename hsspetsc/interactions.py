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


@dataclass
class Interactions:
    near_pairs: np.ndarray   # (p, 2) leaf node ids, a <= b, diagonal included
    far_pairs: np.ndarray    # (q, 2) node ids, a < b, same level
    near_leaves: sp.csr_matrix   # (n_leaves, n_leaves) boolean, symmetric

    def excluded_leaves(self, tree, a):
        """Leaf numbers whose rows node ``a``'s skeleton need not represent:
        the leaves under ``a`` and every leaf near one of them."""
        lev = tree.level_of(a)
        shift = tree.n_levels - lev
        pos = a - (2 ** lev - 1)
        under = np.arange(pos << shift, (pos + 1) << shift)
        rows = self.near_leaves[under]
        return np.union1d(under, rows.indices)


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
    keep_r, keep_c = [np.arange(nl)], [np.arange(nl)]
    for b in range(nl):
        lo, hi = V.indptr[b], V.indptr[b + 1]
        c, v = V.indices[lo:hi], V.data[lo:hi]
        mask = c != b
        c, v = c[mask], v[mask]
        chosen = c[np.lexsort((c, -v))[: target - 1]]
        if chosen.size < target - 1:
            # Fewer voted leaves than the budget asks: fill with the leaves closest
            # in the tree (deepest common ancestor first: smallest b XOR c).
            rest = np.setdiff1d(np.arange(nl), np.r_[chosen, b])
            rest = rest[np.lexsort((rest, rest ^ b))][: target - 1 - chosen.size]
            chosen = np.r_[chosen, rest]
        keep_r.append(np.full(chosen.size, b))
        keep_c.append(chosen)
    r = np.concatenate(keep_r)
    c = np.concatenate(keep_c)
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
