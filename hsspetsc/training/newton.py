"""Newton-Krylov training with Gauss-Newton steps through PETSc.

Each outer step solves (H + lambda I) p = -g inexactly with PETSc KSP CG; H is the
Gauss-Newton matrix, applied matrix-free through a python shell Mat; the
preconditioner is HSSPC, which factors lambda I + H~ where H~ is compressed from
Gauss-Newton entries every ``rebuild`` steps and re-factored with the new lambda at
every step (no recompression). Levenberg-Marquardt damping (lambda from the ratio
of actual to predicted reduction), a backtracking (Armijo) line search, and CG
stopped by the Eisenstat-Walker forcing term with a cap on iterations.

Data passes are counted as: gradient 1, loss 0.5, Gauss-Newton product 1, forming
the Gauss-Newton factors 1 (entries then read stored per-sample factors only); over
a mini-batch, its share of the samples.

Hessian-free practice (Martens 2010, "Deep learning via Hessian-free optimization",
ICML; Sutskever et al. 2013; Martens & Sutskever 2012, "Training deep and recurrent
networks with Hessian-free optimization"), each an option, off by default so the
full-batch method is unchanged:

- ``batch_size`` (with ``batch_growth``): the gradient, the objective of the line
  search and of the reduction ratio come from a mini-batch of the step, drawn from
  one stream keyed by the step number (:meth:`ShardedProblem.batch_indices`: the
  same samples on any number of ranks); a growing schedule multiplies its size by
  ``batch_growth`` every step (Byrd et al. 2012, "Sample size selection in
  optimization methods for machine learning").
- ``cg_batch``: the CG operator's Gauss-Newton products on a sub-batch of the
  gradient batch (the first ``cg_batch`` of the same permutation; Martens used about
  1/10 of the gradient batch, §4.3).
- ``cg_warm_start``: CG starts from ``decay`` times the previous step's last CG
  solution instead of zero (Martens §4.5, decay 0.95 in Martens & Sutskever 2012).
- ``cg_backtrack``: the iterates of CG at iterations ceil(1.3^j) are kept, and the
  step takes, walking back from the last one, the earliest at which the mini-batch
  objective stops decreasing (Martens §4.6); the warm start still uses the last.
- ``cg_stop="martens"``: CG stops on the relative progress of its quadratic model
  phi(x) = x'Ax/2 - b'x instead of the residual: at iteration i, with
  k = max(10, ceil(0.1 i)), once phi(x_i) < 0 and
  (phi(x_i) - phi(x_{i-k})) / phi(x_i) < k eps, eps = 5e-4 (Martens §4.4). A
  residual test is met at once by a good warm start and stops CG after a few
  iterations; the progress test runs CG as long as it still lowers the model.
  phi is tracked from the products CG makes (no extra product).
"""
import copy
import time
import warnings

import numpy as np
from petsc4py import PETSc

from ..compression.compress import refresh
from ..matrix.layout import tree_depth
from ..petsc import HSSProvider, compress_with_options, release_refs
from ..util.validation import check_float, check_int
from .distributed import DistributedGN
from .memory import AUTO, CURVATURE_LADDER, memory_budget, plan_newton


class GNMatContext(HSSProvider):
    """python Mat context: y = (H + diag_shift I) x, H a (distributed) Gauss-Newton
    matrix; it also gives the preconditioners their curvature: HSSPC the compressed
    matrix as an :class:`~hsspetsc.petsc.HSSProvider` (``hss_matrix``), the HF and KFAC PCs ``curvature`` itself.

    ``gn`` is the operator's Gauss-Newton matrix (all samples); ``curvature`` is
    the one the preconditioner is built from (a mini-batch of samples, or ``gn``).
    ``diag_shift`` is the Newton damping lambda (set by ``update``) plus whatever
    MatShift adds (TAO's perturbation); HSSPC factors H~ with that same shift.
    H~ is compressed from the entries of curvature + (``compress_damping_rel`` x
    mean diagonal) I (zero rows need it for the angle distance) with the cheap
    ``compress_defaults``, which -pc_hss_* options given by the user override and
    ``compress_params`` override in turn. With -pc_hss_samples n > 0 H~ comes from
    :func:`hsspetsc.compress_sketch` instead (n products, tree over the neuron
    order; tol, leaf_size and seed from the same options). H~ is positive
    semi-definite by construction (``spd``), so lambda I + H~ factors for every
    lambda > 0.

    ``action`` (set by ``update``) says what the next PC set-up does with H~:
    "build" (compress), "refresh" (:func:`hsspetsc.refresh`: same tree and
    skeletons, blocks read again from the new curvature) or "keep".
    """

    compress_defaults = {"tol": 1e-2, "max_rank": 64, "neighbors": 8}

    def __init__(self, compress_params=None, compress_damping_rel=1e-10):
        self.gn = self.curvature = None
        self.diag_shift = 0.0
        self.hss = self.hss_built = None
        self.action = "build"
        self.compress_damping_rel = compress_damping_rel
        self.compress_params = dict(compress_params or {})
        self.compress_time = self.refresh_time = 0.0
        self.hss_how = ""
        self.progress = None           # set: a long compression prints progress lines
        self.rebuild_from = None       # after a resume: the curvature H~ was built from
        self.comm = None               # a Comm: build H~ distributed over its ranks
        self.comm_required = False     # ... even when the tree has fewer leaves than ranks
        self.shift_aware = None        # c: H~ compressed to |H - H~|_2 <= c lambda
        self.track = False             # keep the last product (x, A x)
        self.last_in = self.last_out = None

    def update(self, gn, diag_shift, action="keep", curvature=None):
        """New Gauss-Newton matrix (and curvature for the PC), shift, and what the
        next PC set-up does with H~ ("build", "refresh" or "keep")."""
        if action not in ("build", "refresh", "keep"):
            raise ValueError(f"unknown H~ action {action!r}")
        self.gn, self.diag_shift = gn, float(diag_shift)
        self.curvature = gn if curvature is None else curvature
        self.action = action

    # -- python Mat protocol -------------------------------------------------
    def apply(self, xa):
        """(H + diag_shift I) xa for a numpy vector (the product mult gives PETSc)."""
        return self.gn.matvec(xa) + self.diag_shift * xa

    @release_refs
    def mult(self, mat, x, y):
        xa = x.getArray(readonly=True)
        out = self.apply(xa)
        y.setArray(out)
        if self.track:                 # Martens' CG test follows A x through these
            self.last_in, self.last_out = xa.copy(), out

    def multTranspose(self, mat, x, y):
        self.mult(mat, x, y)

    @release_refs
    def getDiagonal(self, mat, d):
        d.setArray(self.gn.diagonal() + self.diag_shift)

    def shift(self, mat, a):
        """MatShift (TAO's perturbation of the Hessian)."""
        self.diag_shift += float(a)

    # -- for HSSPC -------------------------------------------------------------
    def _damped(self, base):
        src = copy.copy(base)
        src.damping = base.damping + self.compress_damping_rel * max(
            float(np.mean(base.diagonal())), 1e-300)
        return src

    def hss_matrix(self, params, explicit=()):
        """(H~, shift) for HSSPC: build, refresh or reuse H~ as ``action`` says."""
        self.compress_time = self.refresh_time = 0.0
        how = []
        if self.hss is None or self.action == "build":
            t = time.perf_counter()
            base, resumed = self.curvature, None
            if self.action != "build" and self.rebuild_from is not None:
                base = self.rebuild_from()      # resumed: where H~ was built
                # the checkpoint counted these data passes when H~ was first built
                resumed = (base.problem, base.problem.passes)
            self.rebuild_from = None
            p = dict(params)
            p.update({k: v for k, v in self.compress_defaults.items() if k not in explicit})
            p.update(self.compress_params)
            explicit = set(explicit) | set(self.compress_params)
            if self.shift_aware is not None:
                # accurate against the damping it is factored with, not against |H|;
                # the cheap rank cap would defeat that (unless given explicitly)
                p.update(shift=self.diag_shift, tol=self.shift_aware)
                if "max_rank" not in explicit:
                    p["max_rank"] = None
            sketch = p.get("samples", 0) > 0
            src = self._damped(base)
            # progress lines once a compression passes 10 s (rank 0 only: the ranks
            # compress together)
            rank = getattr(getattr(getattr(src, "problem", None), "comm", None), "rank", 0)
            verbose = None if self.progress and rank == 0 else False
            comm = self.comm if sketch else None
            if comm is not None and not self.comm_required and 2 ** tree_depth(
                    src.n, p["leaf_size"]) < comm.size:
                comm = None                    # fewer leaves than ranks: replicated
            self.hss = self.hss_built = compress_with_options(
                src, p, explicit, order=src.neuron_order() if sketch else None,
                verbose=verbose, comm=comm)
            if resumed is not None:
                resumed[0].passes = resumed[1]
            how.append("sketched the Gauss-Newton matrix from products" if sketch
                       else "compressed the Gauss-Newton entries")
            self.compress_time = time.perf_counter() - t
            if base is self.curvature:
                self.hss_how = how[0]
                return self.hss, self.diag_shift
        if self.action == "refresh":
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # a PC: see the view
                # from the built H~ (not the last refresh): the result depends on
                # the build and the new curvature only, as after a resume
                self.hss = refresh(self.hss_built, self._damped(self.curvature),
                                   verbose=False)
            how.append("refreshed the blocks of H~ at the new parameters")
            self.refresh_time = time.perf_counter() - t
        self.hss_how = "; ".join(how) or "reused the last H~"
        return self.hss, self.diag_shift


# PETSc options a memory plan set (key -> value): not "given" for the next plan
_AUTO_OPTIONS = {}


def plan_memory(problem, name, precond, curvature_samples, hss_samples, leaf_size,
                memory_limit=None, **kw):
    """The memory plan of a Newton method on ``problem`` (collective: every rank gets
    the same plan or the same :class:`MemoryPlanError`); see
    :func:`hsspetsc.training.memory.plan_newton`."""
    model = problem.model
    avail, target, how = memory_budget(problem.comm, memory_limit)
    data = 8 * problem.n_total * (model.widths[0] + (model.widths[-1]
                                                     if problem.Y.ndim > 1 else 1))
    return plan_newton(model.widths, model.loss_name, problem.n_total, precond=precond,
                       name=name, curvature_samples=curvature_samples,
                       hss_samples=hss_samples, leaf_size=leaf_size, available=avail,
                       target=target, budget_source=how, ranks=problem.comm.size,
                       data_bytes=data, **kw)


def options_for(kw, precond):
    """One set of Newton options for a comparison of methods, as ``precond`` takes
    it: ``hss_projections`` is newton-hss's alone (then its curvature is the CG
    batch's, and ``curvature_samples`` serves the other preconditioners only)."""
    kw = dict(kw)
    if kw.get("hss_projections") is not None:
        kw.pop("curvature_samples" if precond == "hss" else "hss_projections", None)
    return kw


PRECONDITIONERS = {"hss": "newton-hss", "none": "newton-cg", "hf": "newton-hf",
                   "kfac": "newton-kfac"}


# Martens' progress test for CG (§4.4): window max(MIN_WINDOW, ceil(0.1 i)), eps
MARTENS_MIN_WINDOW = 10
MARTENS_EPS = 5e-4
CG_STOPS = ("forcing", "martens")

# CG iterations whose iterates backtracking keeps: ceil(1.3^j), j = 0, 1, ...
BACKTRACK_ITERATIONS = frozenset(int(np.ceil(1.3 ** j - 1e-12)) for j in range(60))


def _model_reduction(g, p, Hp):
    """Predicted decrease of the quadratic model m(p) = g.p + 1/2 p.H p."""
    return -(g @ p + 0.5 * p @ Hp)


class NewtonKrylov:
    """LM-damped Gauss-Newton with KSP CG and an optional preconditioner.

    Parameters
    ----------
    problem : ShardedProblem
    precond : "hss" (HSSPC), "none", "hf" (Martens' (diag(H) + lambda)^0.75) or "kfac"
        (Kronecker factors, :mod:`hsspetsc.training.preconditioners`)
    lam : initial damping lambda
    curvature_samples : int, None or "auto" (default "auto")
        The preconditioner's curvature comes from a mini-batch of this many samples,
        drawn from one stream keyed by a step number (the same mini-batch on any
        number of ranks): afresh every step for hf and kfac, at every full
        compression for hss (refreshes keep the samples the skeletons were chosen
        for). The CG operator always uses every sample. None: every sample. "auto":
        the largest of 256, 192, ..., 8 that fits the memory plan (``memory_limit``).
    rebuild : int >= 1 (default 20)
        HSS only: compress H~ again (new tree and skeletons) at least every this
        many steps.
    refresh : bool (default False)
        HSS only: at the steps between full compressions, read the blocks of H~
        again at the new parameters (same mini-batch, kept tree and skeletons,
        :func:`hsspetsc.refresh`); False keeps H~ as it was built.
    rebuild_lost_its : int >= 0 (default 80)
        HSS only: compress H~ again at the next step once the CG iterations lost to
        its age since the last compression exceed this many (a ski-rental rule: set
        it to about what a compression costs in CG iterations, and set-up never costs
        much more than it saves; bench/RESULTS.md has what a compression costs in
        iterations on the benchmark nets). A step's loss: its iterations beyond
        the iterations per decade of residual reduction of the step right after the
        compression, times the decades this step reduced. Iterations, not seconds:
        the rule gives the same trajectory on any machine and number of ranks.
        0: only every ``rebuild`` steps.
    cg_max_it : cap on CG iterations per step
    forcing : "ew" (Eisenstat-Walker choice 2) or a fixed relative tolerance (float)
    pc_options : extra -pc_hss_* options (dict), under the prefix ``prefix``
    hss_samples : int >= 0 or "auto" (default "auto")
        H~ from that many products of the curvature matrix (``compress_sketch``,
        neuron order, at most N; sets -pc_hss_samples); 0: from its entries
        (``compress``). Products of a mini-batch are cheap: the sketch is the faster
        path for the same CG iterations (bench/RESULTS.md). "auto":
        the largest of 128, 96, ..., 16 that fits the memory plan. The leaf size
        (-pc_hss_leaf_size under ``prefix``) is chosen by the plan too (128 down to
        32) unless given.
    memory_limit : float > 0, inf or None (default None)
        Bytes one rank may use; the "auto" options fit it. None: the auto options
        aim at a quarter of the machine's memory (for one process holding the whole
        command, so they are the same on any number of ranks and in a resumed run)
        and what is available decides refusals; inf: no refusal. Before any work
        the peak of a step is estimated from the net and the options
        (:mod:`hsspetsc.training.memory`; the plan is ``memory_plan``); options
        given explicitly that would not fit raise
        :class:`~hsspetsc.training.memory.MemoryPlanError` (a ValueError) naming the
        option to lower, on every rank alike.
    progress : callable(str) or None: a progress line (with an estimate of the time
        to the CG tolerance) every ``progress_every`` seconds of a long step
    pc_layout : "auto" (default), "distributed" or "replicated"
        HSS only, under MPI: "distributed" builds H~ over the ranks
        (``compress_sketch(comm=...)``: each rank stores and factors its subtree of
        the neuron-order tree, the entries and products still sum every rank's
        samples); "replicated" builds the whole H~ on every rank. "auto":
        distributed when there is more than one rank, H~ is sketched
        (``hss_samples`` > 0), ``refresh`` is off (a distributed H~ is not
        refreshed) and the tree has a leaf per rank.
    batch_size : int >= 1 or None (default: every sample)
        Samples in all (over every rank) of each step's gradient mini-batch.
    batch_growth : float >= 1 (default 1)
        The mini-batch of step k has min(N, ceil(batch_size growth^k)) samples.
    cg_batch : int >= 1 or None (default: the gradient batch)
        The CG operator's products over the first this many of the gradient batch.
    cg_warm_start : float in [0, 1] (default 0: CG from zero)
        CG starts from this times the previous step's last CG solution.
    cg_backtrack : bool (default False)
        Take the CG iterate chosen by Martens' backtracking, not the last.
    cg_stop : "forcing" (default) or "martens"
        What ends CG before ``cg_max_it``: the residual reduced by the forcing
        term, or Martens' relative progress of the quadratic model (see above;
        ``forcing`` then only sets the record's figure).
    hss_shift_aware : float in (0, 100] or None (default None: tol relative to |H~|)
        HSS only: compress H~ for the damping lambda of the step it is built at,
        tol = this share c of lambda (|H - H~|_2 <= c lambda; ``compress(shift=)``).
    hss_projections : int >= 1 or None (default None: H~ from ``curvature_samples``)
        HSS only: H~'s curvature is that of the CG batch of the step it is built
        at, each sample's output curvature estimated by this many Gaussian
        projections (``GaussNewton(projections=)``, keyed by the global sample
        index): an unbiased estimate of CG's own operator whose entries cost
        O(batch x projections) and need no per-pair buffer. ``curvature_samples``
        is then not used.
    """

    def __init__(self, problem, precond="hss", lam=1.0, rebuild=20, cg_max_it=100,
                 forcing="ew", pc_options=None, prefix="newton_", compress_params=None,
                 curvature_samples=AUTO, hss_samples=AUTO, refresh=False,
                 rebuild_lost_its=80, progress=None, progress_every=10.0, pc_layout="auto",
                 batch_size=None, batch_growth=1.0, cg_batch=None, cg_warm_start=0.0,
                 cg_backtrack=False, hss_shift_aware=None, memory_limit=None,
                 cg_stop="forcing", hss_projections=None):
        where = "NewtonKrylov"
        if precond not in PRECONDITIONERS:
            raise ValueError(f"The 'precond' parameter must be one of "
                             f"{', '.join(map(repr, PRECONDITIONERS))}. Got {precond!r} "
                             f"instead.")
        self.hss_projections = None
        if hss_projections is not None:
            self.hss_projections = check_int(hss_projections, "hss_projections", where,
                                             lo=1)
            if precond != "hss":
                raise ValueError(f"{where}: hss_projections applies to precond='hss' "
                                 f"only. Got precond={precond!r}.")
            if curvature_samples not in (AUTO, None):
                raise ValueError(f"{where}: hss_projections takes H~'s curvature from "
                                 f"the CG batch; do not give curvature_samples with it "
                                 f"(got {curvature_samples!r}).")
            curvature_samples = None
        self.problem = problem
        self.precond = precond
        self.lam = check_float(lam, "lam", where, lo=0.0, lo_open=True)
        self.rebuild = check_int(rebuild, "rebuild", where, lo=1)
        self.cg_max_it = check_int(cg_max_it, "cg_max_it", where, lo=1)
        self.rebuild_lost_its = check_int(rebuild_lost_its, "rebuild_lost_its", where,
                                          lo=0)
        self.refresh = bool(refresh)
        n_all = problem.n_total
        self.batch_size = None if batch_size is None else check_int(
            batch_size, "batch_size", where, lo=1)
        self.batch_growth = check_float(batch_growth, "batch_growth", where, lo=1.0)
        self.cg_batch = None if cg_batch is None else check_int(cg_batch, "cg_batch",
                                                                where, lo=1)
        if self.batch_size is not None and self.batch_size >= n_all:
            self.batch_size = None
        self.cg_warm_start = check_float(cg_warm_start, "cg_warm_start", where, lo=0.0,
                                         hi=1.0)
        self.cg_backtrack = bool(cg_backtrack)
        if cg_stop not in CG_STOPS:
            raise ValueError(f"The 'cg_stop' parameter of {where} must be one of "
                             f"{CG_STOPS}. Got {cg_stop!r} instead.")
        self.cg_stop = cg_stop
        self._phi = None                # Martens' test: phi(x_i) so far, b, A x, x
        self.prev_direction = None      # the last CG solution (the warm start's base)
        self._iterates = []             # (iteration, CG iterate) kept for backtracking
        if curvature_samples is not None and curvature_samples != AUTO:
            curvature_samples = check_int(curvature_samples, "curvature_samples", where,
                                          lo=1)
        if hss_samples != AUTO:
            hss_samples = check_int(hss_samples, "hss_samples", where, lo=0)
        if memory_limit is not None and memory_limit != np.inf:
            memory_limit = check_float(memory_limit, "memory_limit", where, lo=0.0,
                                       lo_open=True)
        self.forcing = forcing
        self.prefix = prefix
        self.name = PRECONDITIONERS[precond]
        self.deadline = None            # perf_counter time at which CG must stop
        self.stopped_by_budget = False
        self.progress, self.progress_every = progress, float(progress_every)
        self._r0 = 0.0
        self._step_start = self._last_progress = 0.0
        self.hss_origin = (None, 0)     # parameters and step H~ was last built at
        self.rate_ref = None            # CG iterations per decade right after the build
        self.lost = 0.0                 # CG iterations lost since the last compression
        self.force_rebuild = False
        self.it = 0
        self.eta = 0.5
        self.prev_gnorm = None
        self.ctx = GNMatContext(compress_params)
        if hss_shift_aware is not None:
            self.ctx.shift_aware = check_float(hss_shift_aware, "hss_shift_aware", where,
                                               lo=0.0, hi=100.0, lo_open=True)
        self.ctx.progress = progress
        if pc_layout not in ("auto", "distributed", "replicated"):
            raise ValueError(f"The 'pc_layout' parameter of {where} must be 'auto', "
                             f"'distributed' or 'replicated'. Got {pc_layout!r} instead.")
        if pc_layout == "distributed" and (hss_samples == 0 or self.refresh):
            raise ValueError(f"{where}: pc_layout='distributed' needs a sketched H~ "
                             f"(hss_samples > 0) and refresh=False.")
        self.pc_layout = pc_layout
        opts = PETSc.Options()
        pc_options = dict(pc_options or {})
        leaf_key = prefix + "pc_hss_leaf_size"
        def given(name):
            """A -pc_hss_* option as the PC will see it (pc_options, then the
            options database unless an earlier plan put it there), or None."""
            key = prefix + name
            if name in pc_options:
                return str(pc_options[name])
            if opts.hasName(key) and _AUTO_OPTIONS.get(key) != opts.getString(key):
                return opts.getString(key)
            return None
        cp = dict(compress_params or {})
        leaf_size = cp.get("leaf_size", given("pc_hss_leaf_size") or AUTO)
        tuned = (given("pc_hss_auto") or "0").lower() not in ("0", "false", "no")
        if leaf_size == AUTO and tuned:
            leaf_size = 128         # -pc_hss_auto chooses it: not planned
        if given("pc_hss_samples") is not None:
            hss_samples = check_int(int(given("pc_hss_samples")), "pc_hss_samples",
                                    where, lo=0)
        max_rank = cp.get("max_rank", given("pc_hss_max_rank"))
        max_rank = None if max_rank in (None, "None", "none") else int(max_rank)
        if leaf_size != AUTO:
            try:
                leaf_size = int(leaf_size)
            except (TypeError, ValueError):
                raise ValueError(f"The '{leaf_key}' option of {where} must be an int "
                                 f">= 2. Got {leaf_size!r} instead.") from None
            leaf_size = check_int(leaf_size, leaf_key, where, lo=2)
        sketched = hss_samples == AUTO or hss_samples > 0
        distributed = precond == "hss" and problem.comm.size > 1 and (
            pc_layout == "distributed" or (pc_layout == "auto" and sketched
                                           and not self.refresh))
        self.memory_plan = plan_memory(
            problem, self.name, precond, curvature_samples, hss_samples, leaf_size,
            memory_limit, distributed=distributed, max_rank=max_rank,
            distributed_required=pc_layout == "distributed", batch_size=self.batch_size,
            cg_batch=self.cg_batch, projections=self.hss_projections,
            kept_iterates=(sum(1 for i in BACKTRACK_ITERATIONS if i <= self.cg_max_it)
                           if self.cg_backtrack else 0)
            + (4 if cg_stop == "martens" else 0))         # Martens' test: x, Ax, p, Ap
        chosen = self.memory_plan.options
        curvature_samples = chosen.get("curvature_samples", curvature_samples)
        if curvature_samples == AUTO:           # a method without curvature
            curvature_samples = CURVATURE_LADDER[0]
        if curvature_samples is not None and curvature_samples >= problem.n_total:
            curvature_samples = None
        self.curvature_samples = curvature_samples
        hss_samples = chosen.get("hss_samples", 0 if hss_samples == AUTO else hss_samples)
        if distributed and hss_samples > 0:
            self.ctx.comm = problem.comm
            self.ctx.comm_required = pc_layout == "distributed"
        if precond == "hss":
            opts[prefix + "pc_type"] = "python"
            opts[prefix + "pc_python_type"] = "hsspetsc.petsc.HSSPC"
            opts[prefix + "pc_hss_samples"] = str(min(hss_samples,
                                                      problem.model.n_params))
            if "leaf_size" in self.memory_plan.auto:
                opts[leaf_key] = _AUTO_OPTIONS[leaf_key] = str(chosen["leaf_size"])
        elif precond in ("hf", "kfac"):
            opts[prefix + "pc_type"] = "python"
            opts[prefix + "pc_python_type"] = ("hsspetsc.training.preconditioners." +
                                               ("HFDiagonalPC" if precond == "hf"
                                                else "KFACPC"))
        else:
            opts[prefix + "pc_type"] = "none"
        for k, v in pc_options.items():
            opts[prefix + k] = v
        N = problem.model.n_params
        self.A = self.ksp = self.b = self.x = None
        try:
            self.A = PETSc.Mat().createPython((N, N), self.ctx, comm=PETSc.COMM_SELF)
            self.A.setUp()
            self.ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
            self.ksp.setOptionsPrefix(prefix)
            self.ksp.setType("cg")
            self.ksp.setOperators(self.A)
            self.ksp.setFromOptions()       # bad -newton_*pc_hss_* values raise here
            self.ksp.setConvergenceTest(self._converged)
            self.ksp.setMonitor(self._keep_iterate)
            self.b, self.x = self.A.createVecs()
        except BaseException:
            # no PETSc handle may outlive this failed constructor: one freed after
            # PetscFinalize (at interpreter exit) crashes the process
            self.destroy()
            raise

    def destroy(self):
        for o in (self.ksp, self.A, self.b, self.x):
            if o is not None:
                o.destroy()
        self.ksp = self.A = self.b = self.x = None

    def _converged(self, ksp, its, rnorm):
        """PETSc's default test (relative to the first residual, divergence, max
        iterations), plus the time budget: past ``deadline`` CG stops after its
        current iteration (at least one), and the step uses that iterate. Rank 0's
        clock decides for every rank. Also prints the progress line of long steps."""
        if its == 0:
            self._r0 = rnorm
        rtol, atol, dtol, max_it = ksp.getTolerances()
        R = PETSc.KSP.ConvergedReason
        if not np.isfinite(rnorm):
            return R.DIVERGED_NANORINF
        if rnorm <= max(rtol * self._r0, atol):
            return R.CONVERGED_RTOL if rnorm > atol else R.CONVERGED_ATOL
        if self._phi is not None and self._martens_done(ksp, its):
            return R.CONVERGED_ITS
        if rnorm >= dtol * self._r0 and its > 0:
            return R.DIVERGED_DTOL
        if its >= max_it:
            return R.DIVERGED_MAX_IT
        now = time.perf_counter()
        if self.progress is not None and now - self._last_progress >= self.progress_every:
            self._last_progress = now
            self.progress(self._progress_line(its, rnorm, rtol, max_it, now))
        if its >= 1 and self.deadline is not None and self.problem.comm.bcast(
                now >= self.deadline):
            self.stopped_by_budget = True
            return R.CONVERGED_ITS
        return R.ITERATING

    def _martens_done(self, ksp, its):
        """Martens' progress test at CG iteration ``its``. phi(x) = x'(Ax)/2 - b'x
        with A x kept up to date from CG's own products: between two tests CG
        moved x by alpha p after one product A p, and the shell Mat kept (p, A p);
        at iteration 0 A x0 is the product PETSc made for the initial residual
        (or 0 from zero). Vectors are whole on every rank: the same decision."""
        st, ctx = self._phi, self.ctx
        x = ksp.buildSolution().getArray(readonly=True)
        if its == 0:
            if not np.any(x):
                st["Ax"] = np.zeros_like(x)
            elif ctx.last_in is not None and np.array_equal(ctx.last_in, x):
                st["Ax"] = ctx.last_out.copy()
            else:                        # not PETSc's usual order: one product
                st["Ax"] = ctx.apply(x)
        else:
            d, v = x - st["x"], ctx.last_in
            alpha = float(d @ v) / float(v @ v) if v is not None and np.any(v) else 0.0
            st["Ax"] += alpha * ctx.last_out
        st["x"] = x.copy()
        phi = 0.5 * float(x @ st["Ax"]) - float(st["b"] @ x)
        hist = st["phi"]
        hist.append(phi)
        k = max(MARTENS_MIN_WINDOW, int(np.ceil(0.1 * its - 1e-12)))
        return its > k and phi < 0 and (phi - hist[its - k]) / phi < k * MARTENS_EPS

    def _keep_iterate(self, ksp, its, rnorm):
        """KSP monitor: with backtracking, keep the iterates of iterations ceil(1.3^j)
        (1, 2, 3, 4, 5, 7, 9, 11, 14, ...)."""
        if self.cg_backtrack and its >= 1 and its in BACKTRACK_ITERATIONS:
            self._iterates.append((its, ksp.buildSolution().getArray().copy()))

    def batch_of_step(self, it):
        """(size, step) of step ``it``'s gradient mini-batch, or None (every sample)."""
        if self.batch_size is None:
            return None
        m = int(np.ceil(self.batch_size * self.batch_growth ** it - 1e-9))
        return None if m >= self.problem.n_total else (m, it)

    def cg_batch_of_step(self, it):
        """(size, step) of the CG operator's sub-batch, or None (every sample)."""
        batch = self.batch_of_step(it)
        if self.cg_batch is None:
            return batch
        m = self.cg_batch if batch is None else min(self.cg_batch, batch[0])
        return None if m >= self.problem.n_total else (m, it)

    def _backtrack(self, theta, p_last, loss_at, its):
        """Martens' CG backtracking: walk back from the last iterate over the kept
        ones while the mini-batch objective decreases. Returns (direction, its,
        objective at theta + direction)."""
        cands = [(i, x) for i, x in self._iterates if i < its] + [(its, p_last)]
        best_i, best = cands[-1]
        best_f = loss_at(best)
        for i, x in reversed(cands[:-1]):
            f = loss_at(x)
            if not (np.isfinite(f) and f < best_f):
                break
            best_i, best, best_f = i, x, f
        return best, best_i, best_f

    def _progress_line(self, its, rnorm, rtol, max_it, now):
        """'step k: CG iteration j, residual x of the first, t s into the step, about
        e s to go' (the estimate from the reduction per iteration so far)."""
        spent = now - self._step_start
        line = (f"{self.name:<11} step {self.it:>4}: CG iteration {its}, residual "
                f"{rnorm / max(self._r0, 1e-300):.1e} of the first (target {rtol:.1e}), "
                f"{spent:.0f} s into the step")
        red = rnorm / max(self._r0, 1e-300)
        if its >= 2 and 0 < red < 1:
            need = min(max_it, its * np.log(rtol) / np.log(red))
            per_it = (now - self._cg_start) / its
            line += f", about {max(need - its, 0) * per_it:.0f} s to go"
        if self.deadline is not None:
            line += f" (budget ends in {max(self.deadline - now, 0):.0f} s)"
        return line

    # ------------------------------------------------------------ state
    def state_dict(self):
        """Everything a resumed run needs, without the compressed matrix: the
        parameters and step it was built at, to build it again bit for bit."""
        return {"name": self.name, "lam": self.lam, "it": self.it, "eta": self.eta,
                "prev_gnorm": self.prev_gnorm, "hss_theta": self.hss_origin[0],
                "hss_it": self.hss_origin[1], "rate_ref": self.rate_ref,
                "lost": self.lost,
                "force_rebuild": self.force_rebuild,
                "memory_options": dict(self.memory_plan.options)}

    def state_arrays(self):
        """Arrays of the state (the checkpoint's ``nk_*`` entries): the previous CG
        solution, the base of the warm start."""
        return {} if self.prev_direction is None else {"prev_direction":
                                                       self.prev_direction}

    def load_state_arrays(self, a):
        p = a.get("prev_direction")
        self.prev_direction = None if p is None else np.array(p, dtype=np.float64)

    def load_state_dict(self, d):
        saved = d.get("memory_options")
        if saved is not None and dict(saved) != self.memory_plan.options:
            given = ", ".join(f"{k} {v}" for k, v in saved.items())
            raise ValueError(
                f"{self.name}: the checkpoint was trained with {given}, and the memory "
                f"plan here chose {self.memory_plan.options} (another machine, or other "
                f"options): give the checkpoint's values explicitly "
                f"(--curvature-samples, --hss-samples, -pc_hss_leaf_size) to resume it "
                f"bit for bit.")
        self.lam, self.it, self.eta = float(d["lam"]), int(d["it"]), float(d["eta"])
        self.prev_gnorm = None if d["prev_gnorm"] is None else float(d["prev_gnorm"])
        self.rate_ref = None if d.get("rate_ref") is None else float(d["rate_ref"])
        self.force_rebuild = bool(d.get("force_rebuild", False))
        self.lost = float(d.get("lost", 0.0))
        theta0 = d.get("hss_theta")
        self.ctx.hss = None
        if theta0 is not None and getattr(theta0, "size", 0) and self.precond == "hss":
            # the next set-up that would reuse H~ builds it again where it was built
            self.hss_origin = (np.asarray(theta0, dtype=np.float64), int(d["hss_it"]))
            self.ctx.rebuild_from = lambda: self._curvature(*self.hss_origin)

    def _curvature(self, theta, it):
        """The preconditioner's Gauss-Newton matrix at step ``it`` (its mini-batch
        is keyed by the step; with projections, the CG batch of that step)."""
        if self.hss_projections is not None:
            return DistributedGN(self.problem, theta, 0.0, batch=self.cg_batch_of_step(it),
                                 projections=self.hss_projections)
        return DistributedGN(self.problem, theta, 0.0, self.curvature_samples, it)

    def _hss_action(self):
        if self.precond != "hss":
            return "keep"
        theta0, it0 = self.hss_origin
        if (theta0 is None and self.ctx.rebuild_from is None) or self.force_rebuild \
                or self.it - it0 >= self.rebuild:
            return "build"
        return "refresh" if self.refresh else "keep"

    # ------------------------------------------------------------ one step
    def step(self, theta):
        """One damped Gauss-Newton step; returns (new theta, record dict)."""
        pb = self.problem
        t0 = self._step_start = self._last_progress = time.perf_counter()
        batch = self.batch_of_step(self.it)
        loss, g = pb.loss_grad(theta, batch)
        gnorm = float(np.linalg.norm(g))
        t_grad = time.perf_counter() - t0
        if self.forcing == "ew":
            if self.prev_gnorm is not None:
                eta = 0.9 * (gnorm / self.prev_gnorm) ** 2
                if 0.9 * self.eta ** 2 > 0.1:
                    eta = max(eta, 0.9 * self.eta ** 2)
                self.eta = min(0.5, max(eta, 1e-6))
        else:
            self.eta = float(self.forcing)
        gn = pb.gauss_newton(theta, batch=self.cg_batch_of_step(self.it))
        action = self._hss_action()
        if action == "build":
            self.hss_origin = (np.array(theta, dtype=np.float64), self.it)
            self.force_rebuild = False
        curvature = gn
        reuse = self.precond == "hss" and action == "keep" and (
            self.ctx.hss is not None or self.ctx.rebuild_from is not None)
        if self.hss_projections is not None and not reuse:
            # H~ from the CG batch of the step it was built at, projected
            curvature = pb.gauss_newton(theta, batch=self.cg_batch_of_step(
                self.hss_origin[1]), projections=self.hss_projections)
        elif self.precond != "none" and self.curvature_samples is not None and not reuse:
            # HF and KFAC: a fresh mini-batch every step; HSS: the mini-batch H~ was
            # built from, until the next build (its skeletons fit those samples)
            seed = self.hss_origin[1] if self.precond == "hss" else self.it
            curvature = pb.gauss_newton(theta, samples=self.curvature_samples, seed=seed)
        self.ctx.update(gn, self.lam, action, curvature)
        self.ksp.getPC().reset()      # set the PC up again: new lambda (and maybe H~)
        self.ksp.setOperators(self.A, self.A)
        martens = self.cg_stop == "martens"
        self.ksp.setTolerances(rtol=1e-10 if martens else self.eta, max_it=self.cg_max_it)
        t1 = time.perf_counter()
        self.ksp.setUp()
        t_pc = time.perf_counter() - t1
        t_comp = self.ctx.compress_time if self.precond == "hss" else 0.0
        t_refr = self.ctx.refresh_time if self.precond == "hss" else 0.0
        self.ctx.compress_time = self.ctx.refresh_time = 0.0
        self.b.setArray(-g)
        warm = self.cg_warm_start > 0 and self.prev_direction is not None
        if warm:
            self.x.setArray(self.cg_warm_start * self.prev_direction)
        self.ksp.setInitialGuessNonzero(warm)
        self._iterates = []
        t2 = self._cg_start = time.perf_counter()
        self.stopped_by_budget = False
        if martens:
            self._phi = {"b": -g, "phi": []}
            self.ctx.last_in = self.ctx.last_out = None
            self.ctx.track = True
        try:
            self.ksp.solve(self.b, self.x)
        finally:
            self.ctx.track, self._phi = False, None
            self.ctx.last_in = self.ctx.last_out = None
        t_cg = time.perf_counter() - t2
        cg_its = self.ksp.getIterationNumber()
        # CG iterations per decade of residual reduction: the rebuild rule's measure
        rnorm = self.ksp.getResidualNorm()
        decades = np.log10(max(self._r0, 1e-300) / max(rnorm, 1e-300))
        decades = max(decades, 0.3) if np.isfinite(decades) else 0.3
        rate = cg_its / decades
        lost = 0.0
        if self.precond == "hss":
            if action == "build":
                self.rate_ref, self.lost = rate, 0.0
            elif self.rate_ref is not None and cg_its > 0:
                # deterministic (iteration counts and residuals are the same on
                # every rank): every rank takes the same decision
                lost = max(cg_its - self.rate_ref * decades, 0.0)
                self.lost += lost
                if self.rebuild_lost_its > 0 and self.lost > self.rebuild_lost_its:
                    self.force_rebuild = True
        p = self.x.getArray().copy()
        self.prev_direction = p.copy()
        chosen_its, known = cg_its, None
        if self.cg_backtrack and cg_its > 1:
            def loss_at(x):
                with np.errstate(over="ignore", invalid="ignore"):
                    return pb.loss(theta + x, batch)
            p, chosen_its, known = self._backtrack(theta, p, loss_at, cg_its)
        self._iterates = []
        self.last_direction = p
        Hp = gn.matvec(p)
        pred = _model_reduction(g, p, Hp + self.lam * p)
        slope = float(g @ p)
        alpha, new_loss = 1.0, None
        if slope >= 0:                       # not a descent direction: steepest descent
            p, slope, known = -g, -gnorm ** 2, None
        for _ in range(12):
            if known is not None and alpha == 1.0:
                new_loss = known             # backtracking evaluated it already
            else:
                new_loss = pb.loss(theta + alpha * p, batch)
            if np.isfinite(new_loss) and new_loss <= loss + 1e-4 * alpha * slope:
                break
            alpha *= 0.5
        actual = loss - new_loss if np.isfinite(new_loss) else -np.inf
        rho = actual / pred if pred > 0 else -np.inf
        if rho > 0.75 and alpha == 1.0:
            self.lam = max(self.lam / 3.0, 1e-12)
        elif rho < 0.25:
            self.lam = min(self.lam * 2.0, 1e12)
        self.prev_gnorm = gnorm
        self.it += 1
        ok = np.isfinite(new_loss) and new_loss <= loss
        new_theta = theta + alpha * p if ok else theta
        rec = {"optimizer": self.name, "iteration": self.it,
               "loss" if batch is None else "loss_step": float(loss),
               "grad_norm": gnorm, "cg_iterations": int(cg_its), "lambda": self.lam,
               "step": alpha if ok else 0.0, "rho": float(rho), "forcing": self.eta,
               "cg_per_decade": float(rate), "cg_its_lost": float(lost),
               "time_grad": t_grad, "time_compress": t_comp, "time_refresh": t_refr,
               "time_factor": max(t_pc - t_comp - t_refr, 0.0), "time_cg": t_cg}
        if self.precond == "hss":
            rec["hss_action"] = action
        if batch is not None:
            rec["batch_size"] = batch[0]
        if self.cg_backtrack:
            rec["cg_iterate"] = int(chosen_its)
        if self.stopped_by_budget:
            rec["cg_stopped_by_budget"] = True
        return new_theta, rec
