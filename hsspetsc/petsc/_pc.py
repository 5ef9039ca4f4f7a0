"""HSSPC: a python PC that factors shift*I + H~ and applies its inverse.

Options (through the PC's prefix, e.g. -tao_nls_pc_hss_tol under TAO):
    -pc_hss_leaf_size  -pc_hss_max_rank  -pc_hss_tol  -pc_hss_neighbors
    -pc_hss_budget     -pc_hss_distance  -pc_hss_seed
    -pc_hss_samples    n > 0: build H~ from n products of the matrix instead of entries
                       (hsspetsc.compress_sketch; the tree from -pc_hss_distance; needs
                       a matmat on the source, or an assembled Mat; -pc_hss_max_rank
                       only when given, else n // 2; default 0)
    -pc_hss_shift      extra shift added to the operator's own shift (default 0)
    -pc_hss_shift_aware compress for the shift the PC factors with (the operator's
                       shift + -pc_hss_shift, which must be > 0): -pc_hss_tol is then
                       the share c of it (|K - H~|_2 <= c shift; default 0.5, so the
                       preconditioned condition number is at most 3); forces a
                       compression of the operator's source (default off)
    -pc_hss_validate   n: check the ranks of n sampled nodes with SLEPc (default 0)
    -pc_hss_strict     an unknown -pc_hss_* name is an error (default: a warning)
    -pc_hss_auto       choose leaf size, neighbours and near field with
                       hsspetsc.tune at -pc_hss_tol (explicit options still win;
                       default off)
    -pc_hss_auto_shift when shift I + H~ is not positive definite (H~ less accurate
                       than the shift is large), raise the shift tenfold until it is
                       (at most 16 times; default off: the error is raised). H~ is
                       made positive semi-definite at compression, so this is only
                       needed for an operator's own HSSMatrix built with spd=False.
"""
import time
import warnings

import numpy as np
from petsc4py import PETSc

from ..compression import params as _params
from ..compression.compress import compress, compress_sketch
from ..compression.tune import tune
from ..matrix.distributed import DistributedHSSMatrix
from ..matrix.factor import FactorizationError
from ..matrix.hss import HSSMatrix
from ..mpi.comm import Comm
from ..sources import DenseSource, EntrySource
from ..util.validation import check_float, check_int
from . import _options
from ._comm import register_exit_cleanup, release_refs
from ._dist import ReplicatedRows, Scatters, memory_lines
from ._mat import HSSMatContext
from ._vec import Gatherer, check_vec, set_local
from .provider import HSSProvider


def _read_options(pc):
    """The -pc_hss_* values (the table in hsspetsc.petsc._options): compression
    parameters and which of them were given, (extra shift, auto shift), validate."""
    prefix = pc.getOptionsPrefix()
    params, explicit = {}, set()
    for key in _options._COMPRESSION + ("samples", "auto", "distributed", "shift_aware"):
        params[key], given = _options.read(prefix, key)
        if given and key not in ("auto", "distributed", "shift_aware"):
            explicit.add(key)
    if params["shift_aware"]:
        explicit.add("shift_aware")         # H~ must be built for the shift
        if "tol" not in explicit:
            params["tol"] = None            # the shift-aware default (SHIFT_TOL)
    where = f"HSSPC (options -{prefix or ''}pc_hss_*)"
    shift = check_float(_options.read(prefix, "shift")[0], "shift", where)
    validate = check_int(_options.read(prefix, "validate")[0], "validate", where, lo=0)
    auto = _options.read(prefix, "auto_shift")[0]
    return params, explicit, (shift, auto), validate


def _check(params, n, prefix):
    """Validate the -pc_hss_* values (same rules as compress; -pc_hss_samples in
    [0, N], and > 0 only with budget 0 and an angle or geometric tree)."""
    where = f"HSSPC (options -{prefix or ''}pc_hss_*)"
    p = dict(params)
    p.pop("auto", None)
    p.pop("distributed", None)
    samples = check_int(p.pop("samples"), "samples", where, lo=0, hi=n)
    # the shift itself is known at setUp (operator + -pc_hss_shift); any positive
    # value gives tol its shift-aware range here
    p["shift"] = 1.0 if p.pop("shift_aware", False) else None
    _params.check(n, where, **p)
    if samples and (p["budget"] > 0 or p["distance"] == "kernel"):
        raise ValueError(f"{where}: -pc_hss_samples builds plain HSS from products "
                         f"(compress_sketch): it needs -pc_hss_budget 0 and "
                         f"-pc_hss_distance angle or geometric. Got budget "
                         f"{p['budget']:g}, distance {p['distance']!r}.")


def compress_with_options(source, params, explicit=(), order=None, verbose=False,
                          comm=None):
    """H~ from the -pc_hss_* values: ``compress`` (entries), or with samples > 0
    ``compress_sketch`` (products; ``order`` overrides the tree from the distance,
    max_rank only when given explicitly, else the sketch's samples // 2). A missed
    tol is not warned about (H~ is a preconditioner): the PC's view shows the error
    estimate and the capped nodes. ``verbose`` as for ``compress`` (progress lines
    of a long compression). ``comm`` (a communicator or Comm): build a DistributedHSSMatrix over
    its ranks."""
    p = dict(params)
    samples = p.pop("samples", 0)
    auto = p.pop("auto", False)
    p.pop("distributed", None)
    p.pop("shift_aware", None)           # the shift itself comes as p["shift"]
    kw = {} if comm is None else {"comm": comm}
    if samples == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if auto:
                tuned = tune(source, tol=p["tol"] if p["tol"] is not None and not
                             p.get("shift") else _params.default("tol"), seed=p["seed"])
                p.update({k: v for k, v in tuned.items() if k not in explicit})
            return compress(source, verbose=verbose, **p, **kw)
    if not (isinstance(source, (np.ndarray, DenseSource))
            or callable(getattr(source, "matmat", None))):
        raise ValueError(f"HSSPC: -pc_hss_samples {samples} needs products of the matrix, "
                         f"but {type(source).__name__} has no matmat(V); drop the option "
                         f"to compress from entries.")
    max_rank = None
    if "max_rank" in explicit:
        max_rank = samples if p["max_rank"] is None else min(p["max_rank"], samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return compress_sketch(source, samples=samples, leaf_size=p["leaf_size"],
                               tol=p["tol"], max_rank=max_rank,
                               order=p["distance"] if order is None else order,
                               seed=p["seed"], probes=0, verbose=verbose,
                               shift=p.get("shift"), **kw)


def _assembled_source(P, comm):
    """Entries of an assembled Mat (dense or AIJ), gathered on every rank of
    ``comm`` (the set-up's Comm)."""
    m, n = P.getSize()
    rs, re = P.getOwnershipRange()
    rows = np.arange(rs, re, dtype=PETSc.IntType)
    cols = np.arange(n, dtype=PETSc.IntType)
    local = P.getValues(rows, cols).reshape(re - rs, n)
    full = np.vstack(comm.gather(local)) if comm.size > 1 else local
    return DenseSource(full)


class HSSPC:
    """Python PC: ``-pc_type python -pc_python_type hsspetsc.petsc.HSSPC``.

    In ``setUp`` it takes the preconditioning Mat of the PC:

    - an hsspetsc shell Mat (:func:`as_petsc_mat`): factors its HSSMatrix with the
      Mat's shift (+ ``-pc_hss_shift``); if the operator has a near field
      (budget > 0) or compression options are given, it compresses the Mat's
      source again with the PC's options;
    - a python Mat whose context has ``entries(I, J)`` and ``diagonal()``, or an
      assembled Mat (dense, AIJ): compresses it with the PC's options, then factors.

    ``apply`` solves with the factorization; ``view`` prints what was built.
    """

    def __init__(self):
        register_exit_cleanup()
        self.H = None
        self.F = None
        self.info = {}
        self._gather = Gatherer()
        self._scatters = None
        self._native = False

    # -- protocol -----------------------------------------------------------
    @release_refs
    def setFromOptions(self, pc):
        prefix = pc.getOptionsPrefix()
        if PETSc.Options().hasName("help"):
            _options.print_help(prefix, pc.getComm())
        Comm.of(pc.getComm()).together(_options.check_spelling, prefix, pc.getComm())
        _read_options(pc)  # parse early so bad values fail at setFromOptions too

    @release_refs
    def setUp(self, pc):
        comm = Comm.of(pc.getComm())      # the set-up's one communicator
        comm.together(self._setup, pc, comm)

    def _setup(self, pc, comm):
        A, P = pc.getOperators()
        m, n = P.getSize()
        if m != n:
            raise ValueError(f"HSSPC: the preconditioning matrix must be square. Got {m} x {n}.")
        am, an = A.getSize()
        if (am, an) != (m, n):
            raise ValueError(f"HSSPC: operator ({am} x {an}) and preconditioning matrix "
                             f"({m} x {n}) differ in size.")
        params, explicit, (extra_shift, auto_shift), validate = _read_options(pc)
        _check(params, n, pc.getOptionsPrefix())
        t0 = time.perf_counter()
        ctx = P.getPythonContext() if P.getType() == PETSc.Mat.Type.PYTHON else None
        base_shift, source, H = 0.0, None, None
        distributed = bool(params["distributed"])
        if isinstance(ctx, HSSMatContext):
            base_shift = ctx.shift
            distributed = distributed or ctx.distributed
            op_budget = ctx.H.params.get("budget", 0.0)
            if ctx.native and (explicit or params["auto"]):
                raise ValueError("HSSPC: the operator works in its native (tree) order; "
                                 "the PC factors its own matrix, so compression options "
                                 "are not accepted with it.")
            if op_budget == 0.0 and not explicit and not params["auto"] and not (
                    distributed and not ctx.distributed):
                H = ctx.H
                how = "reused the operator's HSSMatrix"
            elif ctx.source is not None:
                source = ctx.source
                how = "compressed the operator's source with the PC options"
            elif op_budget == 0.0:
                raise ValueError(
                    f"HSSPC: compression options ({', '.join(sorted(explicit))}) were given "
                    f"but the operator has no source to compress again; pass source= to "
                    f"as_petsc_mat, or drop the options to reuse the operator's HSSMatrix.")
            else:
                raise ValueError("HSSPC: the operator has a near field (budget > 0) and "
                                 "no source; pass source= to as_petsc_mat so the PC can "
                                 "compress with budget 0.")
        elif isinstance(ctx, HSSProvider):
            if params["shift_aware"]:
                raise ValueError("HSSPC: -pc_hss_shift_aware is not available for an "
                                 "operator that owns its compression (an HSSProvider, "
                                 "e.g. the trainer's Gauss-Newton Mat); drop it.")
            # the Mat's context owns a compression (and when to redo it)
            H, base_shift = ctx.hss_matrix(params, explicit)
            if not isinstance(H, (HSSMatrix, DistributedHSSMatrix)):
                raise TypeError(f"HSSPC: {type(ctx).__name__}.hss_matrix returned "
                                f"{type(H).__name__}, not an HSSMatrix or a "
                                f"DistributedHSSMatrix.")
            base_shift = check_float(base_shift, "shift", f"{type(ctx).__name__}"
                                     f".hss_matrix")
            how = ctx.hss_how
        elif ctx is not None and callable(getattr(ctx, "entries", None)) and callable(
                getattr(ctx, "diagonal", None)):
            source = EntrySource(n, ctx.entries, ctx.diagonal)
            if params["samples"] and callable(getattr(ctx, "matmat", None)):
                source = ctx
            how = f"compressed the entries of a python Mat ({type(ctx).__name__})"
        elif ctx is None:
            source = _assembled_source(P, comm)
            how = f"compressed an assembled Mat ({P.getType()})"
        else:
            raise TypeError(f"HSSPC: cannot read entries of the python Mat context "
                            f"{type(ctx).__name__}; give it entries(I, J) and diagonal().")
        if distributed and params["budget"] > 0:
            raise ValueError("HSSPC: a distributed H~ (-pc_hss_distributed, or a "
                             "distributed operator) needs -pc_hss_budget 0.")
        if H is None:
            if params["shift_aware"]:
                s = base_shift + extra_shift
                if not s > 0:
                    raise ValueError(f"HSSPC: -pc_hss_shift_aware needs a positive "
                                     f"shift (the operator's {base_shift:g} + "
                                     f"-pc_hss_shift {extra_shift:g}); give -pc_hss_shift.")
                params = dict(params, shift=s)
            H = compress_with_options(source, params, explicit,
                                      comm=comm if distributed else None)
        self._native = bool(isinstance(ctx, HSSMatContext) and ctx.native
                            and isinstance(H, DistributedHSSMatrix) and H is ctx.H)
        if self._scatters is not None:
            self._scatters.destroy()
        self._scatters = None
        if isinstance(H, DistributedHSSMatrix):
            # a PC on COMM_SELF (replicated Vecs) with H~ over the ranks: the trainer
            self._scatters = (Scatters(H, self._native) if pc.getComm().getSize() > 1
                              or H.size == 1 else ReplicatedRows(H))
        t1 = time.perf_counter()
        shift = base_shift + extra_shift
        retries = 0
        while True:
            try:
                F = H.factorize(shift=shift)
                break
            except FactorizationError:
                if not auto_shift or retries >= 16:
                    raise
                shift = 10.0 * max(abs(shift), 1e-8 * H.max_diagonal())
                retries += 1
        t2 = time.perf_counter()
        self.H, self.F = H, F
        self.info = {"how": how, "shift": shift, "shift_raised": retries,
                     "compress_s": t1 - t0,
                     "factor_s": t2 - t1, "params": dict(H.params)}
        if validate > 0:
            if isinstance(H, DistributedHSSMatrix):
                raise ValueError("HSSPC: -pc_hss_validate checks a replicated H~; it is "
                                 "not available for a distributed one.")
            from ._validate import format_rank_table, validate_ranks
            vsrc = source if source is not None else getattr(ctx, "source", None)
            if vsrc is None:
                raise ValueError("HSSPC: -pc_hss_validate needs the matrix entries; pass "
                                 "source= to as_petsc_mat.")
            recs = validate_ranks(H, vsrc, nodes=validate, comm=pc.getComm())
            PETSc.Sys.Print(format_rank_table(recs), comm=pc.getComm())
            self.info["validation"] = recs

    @release_refs
    def apply(self, pc, x, y):
        if self.F is None:
            raise RuntimeError("HSSPC.apply before setUp")
        if self._scatters is not None:
            xt = self._scatters.get(x, "HSSPC apply (x)").to_tree(x)
            self._scatters.get(y, "HSSPC apply (y)").from_tree(self.F.solve(xt), y)
            return
        check_vec(x, self.F.n, "HSSPC apply (x)")
        xf = self._gather.full(x)
        set_local(y, self.F.solve(xf))

    def applyTranspose(self, pc, x, y):   # symmetric
        self.apply(pc, x, y)

    def view(self, pc, viewer):
        if viewer.getType() != PETSc.Viewer.Type.ASCII:
            return
        if self.F is None:
            viewer.printfASCII("HSSPC: not set up\n")
            return
        i = self.info
        viewer.printfASCII(f"HSSPC: {i['how']}; shift = {i['shift']:g}\n")
        if isinstance(self.H, DistributedHSSMatrix):
            viewer.printfASCII(f"  build {i['compress_s']:.3f} s, factor {i['factor_s']:.3f} s\n")
            for line in [repr(self.H)] + memory_lines(self.H, self.F):
                viewer.printfASCII("  " + line + "\n")
            return
        viewer.printfASCII(f"  build {i['compress_s']:.3f} s, factor {i['factor_s']:.3f} s, "
                           f"factorization {self.F.nbytes / 1e6:.2f} MB, "
                           f"root block {self.F.stats()['root_size']}\n")
        for line in repr(self.H).splitlines():
            viewer.printfASCII("  " + line + "\n")

    def reset(self, pc):
        self.H = self.F = None
        self._gather.destroy()
        if self._scatters is not None:
            self._scatters.destroy()
            self._scatters = None

    def destroy(self, pc):
        self.reset(pc)
