"""``compress_sketch``: HSS from one block of products K Omega plus a few entries.

For matrices whose products are cheap next to their entries (a Gauss-Newton
Hessian: one product costs about as much as N/d entries) or whose off-diagonal
rank is global rather than local, sampling rows entry by entry (``compress``) pays
for every row it looks at. The randomized HSS construction of Martinsson (SIAM J.
Matrix Anal. Appl. 32, 2011) instead draws one Gaussian block Omega (N x r), forms
Y = K Omega (r products) and then reads only the leaf diagonal blocks and the
sibling couplings K(skel_l, skel_r):

- leaf a:     Y_a = Y(I_a) - K(I_a, I_a) Omega(I_a)   (= K(I_a, rest) Omega(rest))
- parent a:   Y_a = [Yh_l - K(J_l, J_r) Omh_r ; Yh_r - K(J_r, J_l) Omh_l],
              Omega_a = [Omh_l ; Omh_r]
- every node: a row ID Y_a ~= P^T Y_a(skel), the skeleton J_a = the pivot rows,
              Omh_a = P Omega_a, Yh_a = Y_a(skel).

The result is the same HSSMatrix as ``compress`` builds with ``budget=0`` (skeletons,
interpolation matrices P with K(:, cols) ~= K(:, skel) P, leaf blocks, sibling
couplings), so matvec, factorize and the PETSc classes work on it unchanged.

Ranks: ``tol`` is a target for the relative Frobenius error. |Y|_F ~= sqrt(r) |K|_F,
and Y_a is about sqrt(r) times the node's off-diagonal block row applied to an
orthonormal block, so each of the M non-root nodes may drop a part of Frobenius norm
tol |Y|_F / sqrt(M): the rank is the smallest k with |R[k:, k:]|_F within that (R
from the pivoted QR of Y_a^T). (A per-direction threshold instead, |R_kk| < tol |Y|_F,
drops many directions each just under it where the spectrum decays slowly: 3.7e-2 at
tol 1e-3 on a small Gauss-Newton matrix.) A rank can never exceed the samples, and a rank
close to it is unreliable when the spectrum decays slowly (the sampled singular values
carry the tail): ``max_rank`` defaults to ``samples // 2`` (on the 64-128-64
Gauss-Newton matrix, samples 400 with ranks up to 370 gave eps_F 0.21, with ranks
capped at 200 0.11). A node that reaches ``max_rank`` is listed in
``stats()["truncated_nodes"]`` and a warning says to raise ``samples``.

Work, in the unit of ``compress`` (entries of K touched, ``entries_fraction``): r N
for the products (a product counts N entries per column), sum of m_a^2 for the leaf
blocks, sum of r_l r_r for the couplings, the tree's entries for ``order="angle"``,
and ``probes * N`` for the error estimate.
"""
import time
import warnings

import numpy as np

from ._validation import (as_index_array, check_choice, check_float, check_int,
                          rng_from_seed)
from .hss import HSSMatrix
from .interactions import build_interactions
from .skeleton import Skeletons, interpolation_matrix, pivoted_qr_r
from .sources import CountingSource, as_source
from .tree import ClusterTree, Metric, build_tree, tree_depth, tree_layout

ORDERS = ("natural", "angle", "geometric")


def _row_id(Ya, budget, max_rank):
    """Row ID of Ya (ncols x r): Ya ~= P^T Ya[piv], with the smallest rank whose
    dropped part |R[k:, k:]|_F is at most ``budget``. Returns (piv, P, dropped),
    dropped = |R[k:, k:]|_F at the rank taken."""
    ncols = Ya.shape[0]
    if ncols == 0:
        return np.zeros(0, np.int64), np.zeros((0, 0)), 0.0
    R, piv = pivoted_qr_r(Ya.T)
    # R is upper triangular, so |R[k:, k:]|_F^2 = sum of the squared rows k.. of R
    tail = np.r_[np.sqrt(np.cumsum(np.einsum("ij,ij->i", R, R)[::-1])[::-1]), 0.0]
    r = min(int(np.argmax(tail <= budget)), max_rank)
    return piv[:r].astype(np.int64), interpolation_matrix(R, piv, r, ncols), float(tail[r])


def _products(obj, src, Omega, where):
    """K Omega through the object's ``matmat`` (or ``@`` for an ndarray)."""
    if isinstance(obj, np.ndarray):
        Y = obj @ Omega
    elif callable(getattr(obj, "matmat", None)):
        Y = obj.matmat(Omega)
    elif hasattr(src, "A"):                      # DenseSource
        Y = src.A @ Omega
    else:
        raise TypeError(f"{where} needs products K @ V: the source must be an ndarray, "
                        f"a DenseSource or have a matmat(V) method (GaussNewton has one). "
                        f"Got {type(obj).__name__}; use hsspetsc.compress for a source "
                        f"that gives entries only.")
    Y = np.asarray(Y, dtype=np.float64)
    if Y.shape != Omega.shape:
        raise ValueError(f"{where}: matmat returned shape {Y.shape}, expected "
                         f"{Omega.shape}.")
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"{where}: the products K @ Omega contain NaN or Inf; check the "
                         f"source.")
    return Y


def compress_sketch(source, samples=256, leaf_size=128, tol=1e-4, max_rank=None,
                    order="natural", probes=8, seed=0, verbose=False):
    """Compress a symmetric matrix into an HSSMatrix from ``samples`` products and a
    few entries (randomized HSS; see the module docstring).

    Parameters
    ----------
    source : ndarray, DenseSource, or a source with ``entries``, ``diagonal`` and
        ``matmat`` (e.g. :class:`hsspetsc.mlp.GaussNewton`).
    samples : int in [1, N]
        Columns of the Gaussian sketch (products K @ Omega). Pick it about twice
        the largest off-diagonal rank you expect.
    leaf_size : int in [2, N]
        Largest leaf; the leaf diagonal blocks are read exactly.
    tol : float in (0, 1)
        Target relative Frobenius error |K - K~|_F / |K|_F (met when ``samples`` is
        large enough for the ranks it asks; ``probes`` measures it).
    max_rank : int in [1, samples], default ``samples // 2`` (at least 1).
    order : "natural" (default), "angle", "geometric" or a permutation of range(N)
        The tree: "natural" bisects the given index order (no entries; the right
        choice when the order means something); a permutation array is bisected the
        same way (e.g. ``GaussNewton.neuron_order()``); "angle" builds the Gram-angle
        tree of ``compress`` from entries; "geometric" uses ``source.points``.
    probes : int >= 0
        Extra Gaussian products for an a-posteriori estimate of
        |K - K~|_F / |K|_F, reported as ``stats()["error_estimate"]`` (0: none).
    seed : int
        All randomness; same seed, same result.
    verbose : bool
        One progress line per phase.
    """
    where = "compress_sketch"
    src = as_source(source, where)
    n = src.n
    if n < 2:
        raise ValueError(f"{where} needs a matrix of order >= 2. Got N = {n}.")
    samples = check_int(samples, "samples", where, lo=1, hi=n)
    leaf_size = check_int(leaf_size, "leaf_size", where, lo=2, hi=n)
    tol = check_float(tol, "tol", where, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if max_rank is None:
        max_rank = max(1, samples // 2)
    max_rank = check_int(max_rank, "max_rank", where, lo=1, hi=samples)
    given_perm = None
    if not isinstance(order, str):
        given_perm = as_index_array(order, n, "order", where)
        if given_perm.size != n or np.unique(given_perm).size != n:
            raise ValueError(f"The 'order' parameter of {where} must be one of "
                             f"{', '.join(map(repr, ORDERS))} or a permutation of "
                             f"range({n}). Got an array of {given_perm.size} indices with "
                             f"{np.unique(given_perm).size} distinct.")
        order = "given"
    else:
        order = check_choice(order, "order", where, ORDERS)
    probes = check_int(probes, "probes", where, lo=0)
    rng = rng_from_seed(seed, where)
    if order == "geometric" and src.points is None:
        raise ValueError(f"The 'order' parameter of {where} is 'geometric' but the "
                         f"source has no points; use 'natural' or 'angle'.")
    diag = np.asarray(src.diagonal(), dtype=np.float64)
    if diag.shape != (n,) or not np.all(np.isfinite(diag)):
        raise ValueError(f"The diagonal of the source must be a finite vector of length "
                         f"{n}.")
    if order == "angle" and np.any(diag <= 0):
        i = int(np.flatnonzero(diag <= 0)[0])
        raise ValueError(f"order='angle' needs a positive diagonal, but K[{i}, {i}] = "
                         f"{diag[i]:.3g}; add a small damping or use order='natural'.")

    counted = CountingSource(src)
    times = {}
    products = 0

    def phase(name, t0):
        times[name] = time.perf_counter() - t0
        if verbose:
            frac = (counted.count + products * n) / n ** 2
            print(f"[hsspetsc] {name:<12} {times[name]:8.3f} s  (work so far "
                  f"{100 * frac:.2f}% of N^2)", flush=True)

    t0 = time.perf_counter()
    if order in ("natural", "given"):
        n_levels = tree_depth(n, leaf_size)
        off, size = tree_layout(n, n_levels)
        perm = np.arange(n, dtype=np.int64) if given_perm is None else given_perm
        iperm = np.empty_like(perm)
        iperm[perm] = np.arange(n, dtype=np.int64)
        tree = ClusterTree(n=n, n_levels=n_levels, perm=perm, iperm=iperm,
                           node_off=off, node_size=size)
    else:
        tree = build_tree(n, Metric(counted, order, diag), leaf_size, rng)
    phase("tree", t0)

    t0 = time.perf_counter()
    Omega = rng.standard_normal((n, samples))
    Y = _products(source, src, Omega, where)
    products += samples
    # Frobenius budget per node: the dropped parts of all nodes add up to about
    # tol |Y|_F ~= tol sqrt(r) |K|_F
    budget = tol * float(np.linalg.norm(Y)) / np.sqrt(max(1, tree.n_nodes - 1))
    phase("products", t0)

    t0 = time.perf_counter()
    n_nodes, L = tree.n_nodes, tree.n_levels
    rank = np.zeros(n_nodes, dtype=np.int64)
    skel = [np.zeros(0, np.int64) for _ in range(n_nodes)]
    proj = [np.zeros((0, 0)) for _ in range(n_nodes)]
    pos = [np.zeros(0, np.int64) for _ in range(n_nodes)]
    Yh = [None] * n_nodes
    Oh = [None] * n_nodes
    leaf_blocks = {}
    couplings = {}                       # parent -> K(skel_left, skel_right)
    truncated = []
    for lev in range(L, 0, -1):
        for a in tree.level_nodes(lev):
            if lev == L:
                idx = tree.indices(a)
                D = counted.entries(idx, idx)
                leaf_blocks[a] = D
                Ya = Y[idx] - D @ Omega[idx]
                Oa = Omega[idx]
                cols = idx
            else:
                l, r = 2 * a + 1, 2 * a + 2
                B = counted.entries(skel[l], skel[r])
                couplings[a] = B
                Ya = np.vstack([Yh[l] - B @ Oh[r], Yh[r] - B.T @ Oh[l]])
                Oa = np.vstack([Oh[l], Oh[r]])
                cols = np.concatenate([skel[l], skel[r]])
                Yh[l] = Yh[r] = Oh[l] = Oh[r] = None
            piv, P, dropped = _row_id(Ya, budget, max_rank)
            if dropped > budget:
                truncated.append({"node": int(a), "level": int(lev), "rank": int(max_rank),
                                  "achieved": dropped / budget * tol})
            rank[a] = piv.size
            skel[a] = cols[piv]
            pos[a] = piv
            proj[a] = np.ascontiguousarray(P)
            Yh[a] = Ya[piv]
            Oh[a] = P @ Oa
    if L > 0:
        couplings[0] = counted.entries(skel[1], skel[2])
    else:
        leaf_blocks[0] = counted.entries(tree.indices(0), tree.indices(0))
    phase("skeletons", t0)

    inter = build_interactions(tree, None, 0.0)
    near_off = np.zeros(len(inter.near_pairs), dtype=np.int64)
    sizes = np.array([leaf_blocks[a].size for a, _ in inter.near_pairs], dtype=np.int64)
    near_off[1:] = np.cumsum(sizes)[:-1]
    near_data = (np.concatenate([leaf_blocks[a].ravel() for a, _ in inter.near_pairs])
                 if sizes.size else np.zeros(0))
    far_blocks = [couplings[(a - 1) // 2] for a, _ in inter.far_pairs]
    far_off = np.zeros(len(far_blocks), dtype=np.int64)
    if far_blocks:
        far_off[1:] = np.cumsum([b.size for b in far_blocks])[:-1]
    far_data = (np.concatenate([b.ravel() for b in far_blocks]) if far_blocks
                else np.zeros(0))
    skels = Skeletons(rank=rank, skel=skel, proj=proj, pos=pos, truncated=truncated)
    params = {"leaf_size": leaf_size, "max_rank": max_rank, "tol": tol, "neighbors": 0,
              "budget": 0.0, "distance": order, "samples": samples,
              "seed": seed if isinstance(seed, int) else None}
    info = {"construction": "sketch", "products": samples, "time": times}
    H = HSSMatrix(tree, inter, skels, near_data, near_off, far_data, far_off, params, info)

    error_estimate = None
    if probes:
        t0 = time.perf_counter()
        Z = rng.standard_normal((n, probes))
        KZ = _products(source, src, Z, where)
        products += probes
        error_estimate = float(np.linalg.norm(KZ - H.matvec(Z)) / np.linalg.norm(KZ))
        phase("estimate", t0)
    times["total"] = sum(times.values())
    H._info.update({"entries_fraction": (counted.count + products * n) / float(n) ** 2,
                    "entries_evaluated": int(counted.count), "products": products,
                    "error_estimate": error_estimate})
    if truncated:
        warnings.warn(f"compress_sketch: {len(truncated)} node(s) reached max_rank = "
                      f"{max_rank} with samples = {samples}; their off-diagonal rank may "
                      f"be larger: raise samples (and max_rank) for accuracy.",
                      RuntimeWarning, stacklevel=2)
    if verbose:
        print(repr(H), flush=True)
    return H
