"""Skeletons from products: the randomized HSS construction (Martinsson 2011).

For matrices whose products are cheap next to their entries (a Gauss-Newton
Hessian: one product costs about as much as N/d entries) or whose off-diagonal rank
is global rather than local, sampling rows entry by entry pays for every row it
looks at. Instead draw one Gaussian block Omega (N x r), form Y = K Omega (r
products), and read only the leaf diagonal blocks and the sibling couplings
K(skel_l, skel_r):

- leaf a:     Y_a = Y(I_a) - K(I_a, I_a) Omega(I_a)   (= K(I_a, rest) Omega(rest))
- parent a:   Y_a = [Yh_l - K(J_l, J_r) Omh_r ; Yh_r - K(J_r, J_l) Omh_l],
              Omega_a = [Omh_l ; Omh_r]
- every node: a row ID Y_a ~= P^T Y_a(skel) (the column ID of Y_a^T), skeleton
              J_a = the pivot rows, Omh_a = P Omega_a, Yh_a = Y_a(skel).

Per level: the blocks (leaf blocks, or the couplings of the level's nodes' children)
are read in one batch and one Cython ``prange`` forms every Y_a and factors it. The
leaf blocks and couplings read on the way are exactly the near and far blocks of
the result (plain HSS, budget 0), so nothing is read twice. The rank rule is the
one of the entries path (``tol``: see :mod:`hsspetsc.compression.params`). A rank can never
exceed the samples, and a rank close to it is unreliable (the sketch needs about
ten more samples than the rank it certifies): ``max_rank`` defaults to samples // 2,
and a node whose rank ends above samples - 10 is reported like a capped one.
"""
import numpy as np

from ..kernels.compression import IDs, Sketch, sketch_ids
from ..util.blocks import exclusive_cumsum
from .params import shift_thresholds
from .skeleton import LevelIDs, check_alloc

OVERSAMPLING = 10       # a rank above samples - 10 is not certified by the sketch


def products(src, Omega, where):
    """K Omega through the source's ``matmat`` (checked)."""
    if src.matmat is None:
        raise TypeError(f"{where} needs products K @ V: the source must be an ndarray, "
                        f"a DenseSource or have a matmat(V) method (GaussNewton has one). "
                        f"Got {type(src).__name__}; use hsspetsc.compress for a source "
                        f"that gives entries only.")
    Y = np.asarray(src.matmat(Omega), dtype=np.float64)
    if Y.shape != Omega.shape:
        raise ValueError(f"{where}: matmat returned shape {Y.shape}, expected "
                         f"{Omega.shape}.")
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"{where}: the products K @ Omega contain NaN or Inf; check the "
                         f"source.")
    return Y


def sketch_level(lev, leaf, Yt, Ot, s, node_lo, blk, blk_off, ncols, rank_l, rank_r,
                 prev, cols_ptr, cols_idx, tol, max_rank, n_threads, shift=None, levels=1):
    """The row IDs of a set of nodes of one level (see the module docstring): leaf
    rows of Yt/Ot (flat, row-major) at ``node_lo``, or the children's reduced
    sketches ``prev`` = (Yh, Oh, offsets: child c's rows at offsets[c]), children
    2t and 2t+1 of node t. ``shift``, ``levels``: shift-aware thresholds
    (:func:`hsspetsc.compression.params.shift_thresholds`). Returns (LevelIDs, Yh, Oh, offsets)
    of the level."""
    nn = ncols.size
    cap = np.minimum(np.minimum(ncols, s), max_rank).astype(np.int64)
    pos_off, proj_off = exclusive_cumsum(cap), exclusive_cumsum(cap * ncols)
    pos_buf = np.empty(int(cap.sum()), dtype=np.int64)
    proj_buf = np.empty(int((cap * ncols).sum()))
    Yh = np.empty(int(cap.sum()) * s)
    Oh = np.empty(int(cap.sum()) * s)
    rank = np.zeros(nn, dtype=np.int64)
    achieved = np.zeros(nn)
    atol = shift_thresholds(tol, shift, levels, np.full(nn, np.sqrt(s)))
    inp = Sketch(Yt, Ot, node_lo) if leaf else Sketch(*prev)
    ids = IDs(tol, max_rank, atol, rank, achieved, proj_buf, proj_off, pos_buf, pos_off)
    sketch_ids(leaf, s, inp, blk, blk_off, ncols, rank_l, rank_r, s - OVERSAMPLING, ids,
               Sketch(Yh, Oh, pos_off), n_threads)
    check_alloc(rank.min() >= 0, "the sketch's interpolative decompositions")
    return (LevelIDs(lev, rank, achieved, cols_ptr, cols_idx, pos_buf, pos_off, proj_buf,
                     proj_off, ncols), Yh, Oh, pos_off)
