"""Construction of an HSSMatrix: one back end, two front doors.

- :func:`compress` reads sampled entries (skeletons by interpolative decompositions
  of sampled rows, :mod:`hsspetsc.compression.skeleton`);
- :func:`compress_sketch` reads products K @ Omega plus the leaf blocks and sibling
  couplings (randomized HSS, :mod:`hsspetsc.compression.sketch`).

Both validate their parameters against one specification (:mod:`hsspetsc.compression.params`,
where the meaning of ``tol`` is stated), read the source through one
:class:`~hsspetsc.util.blocks.BlockReader` (batched per level, counted) and hand a
:class:`~hsspetsc.compression.construction.Construction` to the one driver
(:mod:`hsspetsc.compression.driver`: tree, neighbours, interaction lists, skeletons
and stored blocks, for one process or over ``comm``), then to the contract
(:mod:`hsspetsc.compression.contract`); ``stats()["params"]["construction"]`` says
which path made it. Every phase is a loop over tree levels in Python around Cython
``prange`` kernels over the level's nodes; BLAS is held to one thread meanwhile.
"""
import numpy as np

from ..matrix.hss import HSSMatrix
from ..mpi.comm import Comm
from ..sources import as_source
from ..util.blocks import BlockReader, IncompressibleError, WorkCapReached
from ..util.threads import blas_single_thread, effective_n_threads
from . import params as _params
from .construction import Construction, Phases
from .contract import finish, warn_misses
from .driver import (
    construct,
    distributed_matrix,
    distributed_reader,
    serial_matrix,
    stored_blocks,
)

# Below this many entries (N <= 8192) the work cap does not apply: reading them all
# costs seconds at most, and small tight-tolerance compressions stay possible.
WORK_FLOOR = float(2 ** 26)


def _source_and_diagonal(source, where):
    src = as_source(source, where)
    n = src.n
    if n < 2:
        raise ValueError(f"{where} needs a matrix of order >= 2. Got N = {n}.")
    diag = np.asarray(src.diagonal(), dtype=np.float64)
    if diag.shape != (n,) or not np.all(np.isfinite(diag)):
        raise ValueError(f"The diagonal of the source must be a finite vector of length "
                         f"{n}.")
    return src, np.ascontiguousarray(diag)


def _check_metric(src, diag, distance, where, what="distance"):
    """The source must look positive semi-definite where that is cheap to see (its
    diagonal), and the metric of the tree must make sense for it."""
    if np.any(diag < 0):
        i = int(np.flatnonzero(diag < 0)[0])
        raise ValueError(f"{where}: the source is not positive semi-definite: its "
                         f"diagonal entry K[{i}, {i}] = {diag[i]:.3g} is negative.")
    if distance == "geometric" and src.points is None:
        raise ValueError(f"The '{what}' parameter of {where} is 'geometric' but the "
                         f"source has no points; use 'angle' or 'kernel'.")


def compress(source, leaf_size=128, max_rank=None, tol=None, neighbors=32, budget=0.0,
             distance="angle", seed=0, memory=None, spd=True, probes=32, verbose=None,
             n_threads=None, comm=None, shift=None):
    """Compress a symmetric (SPD) matrix from its entries into an HSSMatrix.

    Parameters
    ----------
    source : ndarray (N, N) or a source with ``entries(I, J)`` and ``diagonal()``
        (:class:`hsspetsc.EntrySource`, :func:`hsspetsc.gallery.kernel_matrix`, ...;
        see :mod:`hsspetsc.sources` for the optional batched and nogil forms).
    leaf_size : int in [2, N]
        Largest leaf (m). Larger leaves: more exact near field, fewer levels.
    max_rank : int >= 1 or None (default)
        Cap on a node's skeleton size (s). None: ranks grow until tol is met, within
        ``memory``. Nodes stopped by the cap are listed in
        ``H.stats()["truncated_nodes"]`` with what they dropped, and a RuntimeWarning
        names the remedy.
    tol : float in (0, 1), default 1e-5; with ``shift``: in (0, 100], default 0.5
        Target relative error of H~ in the Frobenius norm, enforced node by node:
        each node keeps the smallest rank whose dropped part of its sampled
        off-diagonal block row is at most tol times the block's largest pivot (see
        :mod:`hsspetsc.compression.params`). Ranks adapt to it. With ``shift``, tol is a share
        c of the shift instead: |K - H~|_2 <= c shift.
    neighbors : int >= 0
        Approximate nearest neighbours per index (k), used for the row sampling and
        the near lists. 0 disables the search (uniform sampling only).
    budget : float in [0, 1]
        Near-field share: each leaf is near about ``budget * n_leaves`` leaves,
        whose blocks are kept exactly. 0 gives plain HSS.
    distance : "angle" (default), "kernel" or "geometric"
        Metric for the tree and the neighbours. "geometric" needs ``source.points``.
    seed : int >= 0
        All randomness comes from it, through one counter-based stream per tree node:
        same seed, same result, bit for bit, on any number of threads.
    memory : float > 0 or None
        Budget in bytes for H~ when ``max_rank`` is None (default: a quarter of the
        machine's memory, and never more than twice the dense matrix, 16 N^2);
        with an explicit ``max_rank`` only an explicit memory applies. When it
        binds, a warning says so and the error reached.
    spd : bool (default True)
        Make H~ positive semi-definite: add the smallest diagonal compensation
        delta (to a factor 1.5) for which the factorization of H~ succeeds, on the
        rows with a nonzero diagonal. Why that makes it PSD: the factorization is an
        exact block Cholesky of the hierarchical part, so it succeeds exactly when
        the matrix is positive definite. For an SPD source delta is 0 or at most
        about the compression error, and ``H.factorize(shift)`` then succeeds for
        every shift >= 1e-12 x max diag. With a near field (budget > 0) the
        matvec keeps the exact near blocks and only the factored HSS part (the
        preconditioner) is compensated and certified. ``stats()["compensation"]``.
    probes : int >= 0 (default 32)
        Exact rows read for ``stats()["error_estimate"]``, the estimated
        |K - H~|_F / |K|_F (cost: probes x N entries, counted). 0: none.
    verbose : bool or None
        Print one progress line per phase: True always, False never, None (the
        default) once the compression has taken more than 10 s.
    n_threads : int or None
        OpenMP threads (default: OMP_NUM_THREADS, else all cores).
    shift : float > 0 or None
        The shift lam the matrix will be used with (lam I + H~: kernel ridge
        regression, a GP's noise, Levenberg-Marquardt damping). Shift-aware
        accuracy: each node drops what is small against lam (tol is then the share
        c above), which on high-dimensional data cuts the ranks many times over;
        with c < 1, lam I + H~ preconditions lam I + K with a condition number at
        most (1 + c) / (1 - c) (derivation in :mod:`hsspetsc.compression.params`).
        ``stats()["shift_error"]`` estimates |K - H~|_2 / lam (from the probes).
    comm : mpi4py or PETSc communicator, hsspetsc.Comm, or None
        Build a :class:`hsspetsc.matrix.distributed.DistributedHSSMatrix` over its ranks
        (collective; every rank passes the same source and parameters, checked by
        a checksum of the diagonal): each rank computes and stores its subtree
        (see :mod:`hsspetsc.matrix.distributed`). Needs ``budget=0``. The result applies
        and factors to round-off like the serial matrix with the same parameters.

    Zero rows and columns (a zero diagonal, as in a Gauss-Newton matrix with
    inputs that are always 0) are fine: they stay exactly zero in H~.
    """
    where = "compress"
    src, diag = _source_and_diagonal(source, where)
    p = _params.check(src.n, where, leaf_size=leaf_size, max_rank=max_rank, tol=tol,
                      neighbors=neighbors, budget=budget, distance=distance, seed=seed,
                      memory=memory, spd=spd, probes=probes, shift=shift)
    if p["memory"] is None:
        # an explicit max_rank is the user's cap: then only an explicit memory applies
        p["memory"] = (_params.default_memory(src.n) if p["max_rank"] is None
                       else float("inf"))
    _check_metric(src, diag, p["distance"], where)
    return _construct(src, diag, p, "entries", verbose,
                      effective_n_threads(n_threads, where), comm=comm)


def compress_sketch(source, samples=256, leaf_size=128, tol=None, max_rank=None,
                    order="natural", probes=8, seed=0, spd=True, verbose=None,
                    n_threads=None, comm=None, shift=None):
    """Compress a symmetric matrix into an HSSMatrix from ``samples`` products and a
    few entries (randomized HSS; see :mod:`hsspetsc.compression.sketch`).

    Parameters
    ----------
    source : ndarray, DenseSource, or a source with ``entries``, ``diagonal`` and
        ``matmat`` (e.g. :class:`hsspetsc.mlp.GaussNewton`).
    samples : int in [1, N]
        Columns of the Gaussian sketch (products K @ Omega). Pick it about twice
        the largest off-diagonal rank you expect.
    leaf_size : int in [2, N]
        Largest leaf; the leaf diagonal blocks are read exactly.
    tol : float in (0, 1), default 1e-4; with ``shift``: in (0, 100], default 0.5
        Target relative error of H~ in the Frobenius norm, node by node, as for
        :func:`compress` (met when ``samples`` is large enough for the ranks it
        asks; ``probes`` measures it). With ``shift``: the share c of the shift,
        as for :func:`compress`.
    max_rank : int in [1, samples], default ``samples // 2`` (at least 1).
    order : "natural" (default), "angle", "geometric" or a permutation of range(N)
        The tree: "natural" bisects the given index order (no entries; the right
        choice when the order means something); a permutation array is bisected the
        same way (e.g. ``GaussNewton.neuron_order()``); "angle" builds the Gram-angle
        tree of ``compress`` from entries; "geometric" uses ``source.points``.
    probes : int >= 0
        Extra Gaussian products for an a-posteriori estimate of
        |K - K~|_F / |K|_F, reported as ``stats()["error_estimate"]`` (0: none).
    seed : int >= 0
        All randomness; same seed, same result, on any number of threads.
    spd : bool (default True)
        Make H~ positive semi-definite by the smallest certified diagonal
        compensation, as for :func:`compress`.
    verbose : bool or None
        One progress line per phase: True, False, or None (after 10 s).
    n_threads : int or None
        OpenMP threads (default: OMP_NUM_THREADS, else all cores).
    shift : float > 0 or None
        Shift-aware accuracy, as for :func:`compress`; ``stats()["shift_error"]``
        then estimates |K - H~|_2 / shift from the probes' products.
    comm : mpi4py or PETSc communicator, hsspetsc.Comm, or None
        Build a distributed matrix over its ranks, as for :func:`compress`. Every
        rank computes the products K @ Omega (the source's ``matmat``) and keeps
        its rows.
    """
    where = "compress_sketch"
    src, diag = _source_and_diagonal(source, where)
    n = src.n
    if tol is None and shift is None:
        tol = _params.default("tol", "sketch")
    p = _params.check(n, where, samples=samples, leaf_size=leaf_size, tol=tol,
                      max_rank=max_rank, probes=probes, seed=seed, spd=spd, shift=shift)
    if p["max_rank"] is None:
        p["max_rank"] = max(1, p["samples"] // 2)
    if p["max_rank"] > p["samples"]:
        raise ValueError(f"The 'max_rank' parameter of {where} must be an int in the "
                         f"range [1, {p['samples']}]. Got {p['max_rank']} instead.")
    order = _params.check_order(order, n, where)
    _check_metric(src, diag, order if isinstance(order, str) else "natural", where,
                  what="order")
    if isinstance(order, str):
        p["distance"] = order
    else:
        p["distance"] = "given"
    p.update(neighbors=0, budget=0.0)
    return _construct(src, diag, p, "sketch", verbose, effective_n_threads(n_threads, where),
                      perm=None if isinstance(order, str) else order, comm=comm)


def _construct(src, diag, p, path, verbose, nt, perm=None, comm=None):
    """The back end of both front doors (parameters already validated): the driver
    (:mod:`hsspetsc.compression.driver`), then the contract."""
    if comm is not None:
        return _construct_distributed(src, diag, p, path, verbose, nt, perm, comm)
    n = src.n
    # the work cap: the construction reads at most N^2 entries-equivalents in all
    reader = BlockReader(src, nt, limit=max(float(n) ** 2, WORK_FLOOR))
    ctx = Construction.start(src, diag, p, path, nt, reader, verbose)
    try:
        H = serial_matrix(construct(ctx, perm))
    except WorkCapReached as e:
        raise _incompressible(e, ctx) from None
    reader.limit = None        # the error-estimate probes come on top (probes x N)
    H = finish(H, ctx)
    warn_misses(H, ctx, stacklevel=3)
    if verbose or (verbose is None and ctx.phases.times["total"] > Phases.AUTO_PROGRESS_S):
        print(repr(H), flush=True)
    return H


_NEXT_PHASE = {"": "tree", "products": "tree", "tree": "neighbors",
               "neighbors": "skeletons", "interactions": "skeletons",
               "skeletons": "blocks"}


def _incompressible(e, ctx):
    """The IncompressibleError of a read that would cross the work cap."""
    n, p, path, ph = ctx.n, ctx.params, ctx.path, ctx.phases
    phase = _NEXT_PHASE.get(list(ph.times)[-1] if ph.times else "", "blocks")
    read = e.count + (p["samples"] * n if path == "sketch" else 0)
    how = (f"a larger tol (now {p['tol']:g}, the share of the shift)" if p.get("shift")
           else "shift=lam with the lam you will solve with (shift-aware accuracy), or "
                f"a larger tol (now {p['tol']:g})")
    return IncompressibleError(
        f"compress{'' if path == 'entries' else '_sketch'}: at this accuracy H~ costs "
        f"more than the dense matrix: the {phase} phase would read {e.request} more "
        f"entries after {read} ({100 * (read + e.request) / float(n) ** 2:.0f}% of "
        f"N^2, N = {n}), and the compression stops at N^2. Use {how}, or the dense "
        f"matrix ({8 * float(n) ** 2 / 2 ** 20:.0f} MB; hsspetsc.solve(..., "
        f"method='dense')).", entries_read=int(read), n=n, phase=phase)


def _construct_distributed(src, diag, p, path, verbose, nt, perm, comm):
    """compress / compress_sketch with ``comm``: see :mod:`hsspetsc.compression.driver`."""
    c = Comm.of(comm)
    where = "compress" if path == "entries" else "compress_sketch"
    # (a source whose entries are summed over the ranks is read collectively)
    reader = c.run(distributed_reader, src, path, where, nt)
    ctx = Construction.start(src, diag, p, path, nt, reader, verbose, comm=c)
    D = c.run(lambda: finish(distributed_matrix(construct(ctx, perm), c), ctx))
    warn_misses(D, ctx, stacklevel=4)
    return D


def refresh(H, source, verbose=None, n_threads=None):
    """H~ of a new ``source`` on the tree and skeletons of ``H``: the stored blocks
    (leaf and near blocks, far blocks and sibling couplings, all exact entries of the
    source) are read again; the interpolation matrices are kept.

    For a source close to the one ``H`` was built from (a Gauss-Newton matrix a few
    optimizer steps later) this costs the blocks only, a small share of a full
    compression (which reads sampled rows of every node to choose the skeletons).
    The contract of :func:`compress` holds again: the error estimate (``probes``)
    is measured against the new source and, with ``spd``, the diagonal compensation
    is found again. With the source ``H`` was built from, the result equals ``H``
    bit for bit. Nodes that were capped stay capped; whether the kept skeletons
    still serve shows in ``stats()["error_estimate"]``.

    Parameters
    ----------
    H : HSSMatrix (from :func:`compress` or :func:`compress_sketch`)
    source : a source of the same order N, with ``entries`` and ``diagonal`` (and
        ``matmat`` when H was sketched and measured with probes)
    verbose, n_threads : as for :func:`compress`
    """
    where = "refresh"
    if not isinstance(H, HSSMatrix):
        raise TypeError(f"{where}: H must be an HSSMatrix, not {type(H).__name__}")
    src, diag = _source_and_diagonal(source, where)
    if src.n != H.n:
        raise ValueError(f"{where}: the source has order {src.n}, H has order {H.n}; "
                         f"refresh needs the same index set.")
    p = dict(H.params)
    nt = effective_n_threads(n_threads, where)
    reader = BlockReader(src, nt)
    ctx = Construction.start(src, diag, p, p["construction"], nt, reader, verbose,
                             where=where)
    tree, bases = H._parts["tree"], H._parts["bases"]
    with blas_single_thread():
        by_skel = (bases.skel_ptr[:-1], bases.rank, bases.skel_idx)
        near, far, couplings = stored_blocks(tree, reader, by_skel, H.near_pairs,
                                             H.far_pairs, H.sib_pairs.reshape(-1, 2))
    ctx.phases.done("blocks")
    info = {k: H._info[k] for k in ("neighbor_recall", "neighbor_iterations",
                                    "truncated_nodes") if k in H._info}
    info["refreshed"] = True
    H1 = HSSMatrix(tree=tree, bases=bases, near=near, far=far, couplings=couplings,
                   params=p, info=info)
    # the compensation H needed is the first guess for the refreshed blocks
    H1 = finish(H1, ctx, near=H._info.get("compensation") or None)
    warn_misses(H1, ctx, stacklevel=2)
    return H1
