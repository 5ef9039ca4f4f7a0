"""Pure-numpy reference of the matvec passes (test oracle for hsspetsc.kernels.matvec).

Same flat arrays, same passes, plain Python loops over nodes; slow and obvious.
"""
import numpy as np


def _block(data, off, rows, cols, trans):
    if trans == 0:
        return data[off:off + rows * cols].reshape(rows, cols)
    return data[off:off + rows * cols].reshape(cols, rows).T


def reference_matvec(H, W):
    """K~ W with numpy only (W: (N,) or (N, k), user order)."""
    W = np.asarray(W, dtype=np.float64)
    vec = W.ndim == 1
    W2 = W.reshape(H.n, -1)
    k = W2.shape[1]
    tree = H.tree
    off, size = tree.node_off, tree.node_size
    Wt = W2[tree.perm]
    U = np.zeros_like(Wt)
    n_nodes = tree.n_nodes
    first_leaf = tree.first_leaf

    def P(a):
        return H.proj[H.proj_ptr[a]:H.proj_ptr[a + 1]].reshape(H.rank[a], H.ncols[a])

    # near field
    for b in range(first_leaf, n_nodes):
        for e in range(H.near_ptr[b], H.near_ptr[b + 1]):
            a = H.near_src[e]
            B = _block(H.near_data, H.near_blk[e], size[b], size[a], H.near_trans[e])
            U[off[b]:off[b] + size[b]] += B @ Wt[off[a]:off[a] + size[a]]
    if tree.n_levels == 0:
        return _finish(H, U, W2, vec)
    # upward
    What = [np.zeros((0, k))] * n_nodes
    for a in range(n_nodes - 1, 0, -1):
        x = (Wt[off[a]:off[a] + size[a]] if a >= first_leaf
             else np.vstack([What[2 * a + 1], What[2 * a + 2]]))
        What[a] = P(a) @ x
    # far field
    Uhat = [np.zeros((H.rank[a], k)) for a in range(n_nodes)]
    for a in range(1, n_nodes):
        for e in range(H.far_ptr[a], H.far_ptr[a + 1]):
            b = H.far_src[e]
            B = _block(H.far_data, H.far_blk[e], H.rank[a], H.rank[b], H.far_trans[e])
            Uhat[a] += B @ What[b]
    # downward
    for a in range(1, n_nodes):
        y = P(a).T @ Uhat[a]
        if a >= first_leaf:
            U[off[a]:off[a] + size[a]] += y
        else:
            r1 = H.rank[2 * a + 1]
            Uhat[2 * a + 1] = Uhat[2 * a + 1] + y[:r1]
            Uhat[2 * a + 2] = Uhat[2 * a + 2] + y[r1:]
    return _finish(H, U, W2, vec)


def _finish(H, U, W2, vec):
    """Back to user order, plus the diagonal compensation."""
    out = np.empty_like(U)
    out[H.tree.perm] = U
    if H.compensation is not None:
        out += H.compensation[:, None] * W2
    return out[:, 0] if vec else out
