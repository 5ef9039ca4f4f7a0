"""Memory planning for the Newton-Krylov trainer: the peak of a step, estimated from
the net and the options before any work, and the defaults chosen to fit.

The largest buffers of a Newton step are known from the shapes alone:

- the data on every rank and the CG operator's forward cache (its samples x the
  widths);
- the curvature mini-batch's Gauss-Newton entry factors (``GaussNewton``): per
  sample the backpropagated output Jacobians S (out_l x d per layer) and the layer
  pairs' inner products (out_la x out_lb per pair, the ``_Gbuf`` an entry reads:
  83 MB per sample on the deep autoencoder);
- the sketch of ``compress_sketch``: Omega and Y = H Omega, N x samples each, and a
  third while they are permuted to tree order;
- the leaf blocks of H~ (N x the tree's leaf size), read once (into the reader's
  buffer, and a send buffer with more than one rank), and the factorizations of lambda I + H~ (the PSD
  compensation's search and the PC's own).

:func:`estimate_newton` adds them up phase by phase (products, permute, leaf read,
levels, contract, PC factor) and takes the largest; the factors on the leaf blocks
(``FACTOR_PEAK``, ``CONTRACT_PEAK``, ``ENTRIES_PEAK``) were measured with
tracemalloc (``bench/bench_memory.py`` compares estimate and measurement).
:func:`plan_newton` picks the options left to "auto" (curvature samples, products,
leaf size) so the estimate fits a quarter of the machine's memory, and refuses
explicit options that do not fit what is available, naming the option to lower.
"""
import itertools
import math
import os
import resource
from dataclasses import dataclass, field

from ..matrix.layout import tree_depth
from ..mlp.gauss_newton import GaussNewton
from ..mpi.comm import Comm

F8 = 8                      # bytes per float64
AUTO = "auto"
# starting points and floors of the automatic choice, largest first
CURVATURE_LADDER = (256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8)
SAMPLES_LADDER = (128, 96, 64, 48, 32, 24, 16)
LEAF_LADDER = (128, 96, 64, 48, 32)
DEFAULT_SHARE = 0.25        # auto options fit this share of the machine's memory
# peaks over the leaf-block storage N x leaf, and over N x max_rank for the entries
# path (measured; bench/bench_memory.py)
FACTOR_PEAK = 1.5           # factorize(shift): the factor and its workspace (grouped)
CONTRACT_PEAK = 1.5         # the PSD compensation: one factorization at a time
ENTRIES_PEAK = 7.0          # compress from entries: over N x max_rank (default 64)
GB = 2.0 ** 30
# the estimate models numpy's buffers; the resident set was 1.0-1.35x it on the nets
# of bench/bench_memory.py (allocator slack, the libraries' own buffers)
MARGIN = 1.4

OPTION_NAMES = {"curvature_samples": "curvature_samples (--curvature-samples)",
                "hss_samples": "hss_samples (--hss-samples)",
                "leaf_size": "leaf_size (-pc_hss_leaf_size)",
                "cg_batch": "cg_batch (--cg-batch)",
                "batch_size": "batch_size (--batch-size)"}


class MemoryPlanError(ValueError):
    """The options of a Newton method would not fit the memory available."""


def _gb(x):
    return f"{x / GB:.2f} GB"


# ----------------------------------------------------------------- machine
def _cgroup_limit():
    """(limit, usage) of this process's cgroup in bytes, or (inf, 0)."""
    for lim, cur in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                     ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                      "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(lim) as f:
                text = f.read().strip()
            limit = math.inf if text == "max" else float(text)
            with open(cur) as f:
                usage = float(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit < 2 ** 60:
            return limit, usage
    return math.inf, 0.0


def _meminfo(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) * 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left():
    """RLIMIT_AS minus this process's address space in use (inf without a limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return math.inf
    used = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    used = float(line.split()[1]) * 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return max(float(soft) - used, 0.0)


def machine_memory():
    """The machine's memory in bytes: physical memory or the cgroup's limit."""
    total = _meminfo("MemTotal")
    if total is None:
        try:
            total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            total = float(2 ** 33)
    return min(total, _cgroup_limit()[0])


def available_memory(per_node=1):
    """What this process can still allocate, in bytes: the smaller of its share of
    what the node has available (free memory and the cgroup's room, over
    ``per_node`` processes) and the address-space limit (``ulimit -v``) less what
    it has mapped already."""
    limit, usage = _cgroup_limit()
    node = min(_meminfo("MemAvailable") or machine_memory(), limit - usage)
    return min(node / per_node, _address_space_left())


# ----------------------------------------------------------------- estimate
@dataclass
class MemoryEstimate:
    """Peak bytes of one rank during a Newton step, by phase, and the parts."""
    phases: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)

    @property
    def peak(self):
        return max(self.phases.values()) if self.phases else 0.0

    @property
    def peak_phase(self):
        return max(self.phases, key=self.phases.get)

    def describe(self, top=4):
        """'x GB (phase; largest parts: ...)'."""
        parts = sorted(self.parts.items(), key=lambda kv: -kv[1])[:top]
        return (f"{_gb(self.peak)} at its peak ({self.peak_phase}; largest parts: " +
                ", ".join(f"{k} {_gb(v)}" for k, v in parts) + ")")


def gauss_newton_bytes(widths, loss, m, copies=True):
    """Bytes of a ``GaussNewton`` over ``m`` samples: (forward cache (and the data's
    copies of a mini-batch: ``copies``), entry factors without the pairs, the pairs'
    buffer, the largest temporary of building the factors, and of the pairs)."""
    w = [int(x) for x in widths]
    L, d = len(w) - 1, w[-1]
    ce = loss == "cross_entropy"
    n_par = sum((w[i] + 1) * w[i + 1] for i in range(L))
    forward = m * ((w[0] + d if copies else 0) + 2 * sum(w[1:]))     # zs, acts
    S = m * d * (sum(w[1:L]) + (d if ce else 1))
    xs = 2 * m * sum(x + 1 for x in w[:L])
    factors = S + xs + 4 * n_par                             # + diagonal and index maps
    inner = max(w[1:L], default=0)
    build_tmp = m * inner * d + (2 * m * d * d if ce else 0)
    pairs = GaussNewton.pair_offsets(w, m, not ce)[1]
    pair_tmp = m * max([w[a + 1] * w[b + 1] for a in range(L) for b in range(a, L)
                        if ce or b < L - 1] or [0])
    return F8 * forward, F8 * factors, F8 * pairs, F8 * build_tmp, F8 * pair_tmp


def projected_gauss_newton_bytes(widths, loss, m, r, copies=True):
    """:func:`gauss_newton_bytes` of a ``GaussNewton(projections=r)`` over ``m``
    samples: the projections R (m d r), the sensitivities s (m r sum out_l, kept
    per layer and flat), the activations x (twice), no pairs; building them holds
    the samples' forward values once more and one layer's back-propagated block."""
    w = [int(x) for x in widths]
    L, d = len(w) - 1, w[-1]
    n_par = sum((w[i] + 1) * w[i + 1] for i in range(L))
    forward = m * ((w[0] + d if copies else 0) + 2 * sum(w[1:]))
    factors = m * d * r + 2 * m * r * sum(w[1:]) + 2 * m * sum(x + 1 for x in w[:L]) \
        + 4 * n_par
    build_tmp = 2 * m * sum(w[1:]) + 2 * m * r * max(w[1:])
    return F8 * forward, F8 * factors, 0.0, F8 * build_tmp, 0.0


def _share(m, ranks):
    """A bound on one rank's share of m samples drawn over ``ranks`` shards (the
    mean plus four standard deviations)."""
    if ranks <= 1:
        return m
    mean = m / ranks
    return int(min(m, math.ceil(mean + 4.0 * math.sqrt(mean) + 1)))


def estimate_newton(widths, loss, n_total, *, precond="hss", curvature_samples=256,
                    hss_samples=128, leaf_size=128, max_rank=None, ranks=1,
                    distributed=False, distributed_required=False, batch_size=None,
                    cg_batch=None, kept_iterates=0, data_bytes=None, projections=None):
    """The peak memory of one rank during a Newton step of an MLP with ``widths``
    (see the module docstring), as a :class:`MemoryEstimate` (bytes). With
    ``projections`` (HSS only) H~'s curvature is the CG batch's, projected
    (``curvature_samples`` is then not used)."""
    w = [int(x) for x in widths]
    N = sum((w[i] + 1) * w[i + 1] for i in range(len(w) - 1))
    n_loc = _share(n_total, ranks) if ranks > 1 else n_total
    if data_bytes is None:                  # X and Y, whole, on every rank
        data_bytes = F8 * n_total * (w[0] + w[-1])
    parts = {"data": float(data_bytes)}
    cg_n = n_loc
    for b in (batch_size, cg_batch):
        if b is not None:
            cg_n = min(cg_n, _share(int(b), ranks))
    fwd_cg = gauss_newton_bytes(w, loss, cg_n, copies=cg_n < n_loc)[0]
    parts["CG products' forward cache"] = fwd_cg
    # parameters, gradient, CG's and PETSc's vectors, and the iterates that CG
    # backtracking keeps
    parts["vectors"] = float(F8 * N * (12 + kept_iterates))
    base = sum(parts.values())
    g_n = n_loc if batch_size is None else min(n_loc, _share(int(batch_size), ranks))
    phases = {"gradient": base + 1.5 * gauss_newton_bytes(w, loss, g_n, g_n < n_loc)[0]}
    if precond == "none":
        return MemoryEstimate(phases, parts)
    if projections is not None and precond == "hss":
        m_loc = cg_n
        fwd, fac, pairs, fac_tmp, tmp = projected_gauss_newton_bytes(
            w, loss, m_loc, int(projections), copies=cg_n < n_loc)
    else:
        m = n_total if curvature_samples is None else min(int(curvature_samples),
                                                          n_total)
        m_loc = _share(m, ranks)
        fwd, fac, pairs, fac_tmp, tmp = gauss_newton_bytes(w, loss, m_loc)
    if precond in ("hf", "kfac"):
        parts["curvature factors"] = fwd + fac
        phases["curvature factors"] = base + fwd + fac + fac_tmp
        if precond == "kfac":                # the Kronecker factors and their inverses
            k = sum((w[i] + 1) ** 2 + w[i + 1] ** 2 for i in range(len(w) - 1))
            phases["curvature factors"] += 4.0 * F8 * k
        return MemoryEstimate(phases, parts)
    leaf = max(2, min(int(leaf_size), N))
    depth = tree_depth(N, leaf)
    leaf_eff = N / 2 ** depth                 # the leaves' mean size
    # fewer leaves than ranks: the trainer keeps H~ whole on every rank
    P = ranks if distributed and (distributed_required or 2 ** depth >= ranks) else 1
    D = F8 * N * leaf_eff / P                 # this rank's leaf blocks
    F = fwd + fac
    phases["curvature factors"] = base + F + fac_tmp
    parts["curvature entry factors"] = F
    parts["curvature pairs"] = pairs
    parts["leaf blocks"] = D
    if hss_samples:
        s = min(int(hss_samples), N)
        r = s // 2 if max_rank is None else min(int(max_rank), s)   # as compress_sketch
        r = max(1, min(r, leaf))
        NS = F8 * N * s
        own = NS / P
        proj = F8 * N * r * (1.0 + 2.0 * r / leaf_eff) / P
        H = D + proj + F8 * (N / leaf_eff) * r * r / P
        parts["sketch (Omega, Y)"] = 2.0 * NS
        parts["bases"] = proj
        # GaussNewton.matmat's temporaries: (columns of a chunk, samples, widths)
        cols = min(s, max(1, int(1e6 // (m_loc * max(w)))))
        chunk = F8 * cols * m_loc * (w[0] + 2 * sum(w[1:]))
        phases["products"] = base + F + 2.0 * NS + 3.0 * chunk
        phases["permute"] = base + F + 2.0 * NS + (own if P > 1 else NS)
        keep = 2.0 * NS + 2.0 * own if P > 1 else 2.0 * NS
        # the reader's buffer (the source writes into it), and with several ranks
        # the local part reduced into it
        phases["leaf read"] = base + F + keep + (2.0 if ranks > 1 else 1.0) * D + pairs + tmp
        phases["levels"] = base + F + pairs + keep + D + proj + 2.0 * F8 * (
            N / leaf_eff) * r * s / P
    else:
        # row samples and candidate bases of max_rank columns per index dominate
        r = 64 if max_rank is None else int(max_rank)
        H = D + F8 * N * r
        phases["entries"] = base + F + pairs + tmp + ENTRIES_PEAK * F8 * N * r
    parts["H~"] = H
    phases["contract"] = base + F + pairs + H + CONTRACT_PEAK * D
    phases["PC factor"] = base + F + pairs + H + FACTOR_PEAK * D
    return MemoryEstimate(phases, parts)


# ----------------------------------------------------------------- plan
@dataclass
class MemoryPlan:
    """What :func:`plan_newton` chose: the options (auto ones filled in), the
    estimate, the budget it was held to and where that came from."""
    options: dict
    estimate: MemoryEstimate
    budget: float
    budget_source: str
    auto: tuple
    target: float = math.inf

    def line(self, name):
        opts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.options.items()
                         if v is not None)
        chosen = f" (auto: {', '.join(self.auto)})" if self.auto else ""
        line = (f"{name}: memory plan{' ' + opts if opts else ''}{chosen}: estimated "
                f"peak per rank "
                f"{_gb(self.estimate.peak)} of {_gb(self.budget)} ({self.budget_source})")
        if self.auto and MARGIN * self.estimate.peak > self.target:
            line += (f"; above the auto target {_gb(self.target)} even at the smallest "
                     f"options ({self.estimate.describe()})")
        return line


def memory_budget(comm=None, memory_limit=None, share=DEFAULT_SHARE):
    """(available per rank, auto target, description) in bytes, the same on every
    rank of ``comm`` (a :class:`hsspetsc.mpi.comm.Comm` or None; the smallest
    over the ranks). The target does not depend
    on what happens to be free, nor on the number of ranks: ``share`` of the
    machine's memory (or ``memory_limit``), so the auto options, and the
    trajectory, are the same on any number of ranks and in a resumed run. What is
    available (free memory and cgroup room over the ranks of the node, the
    address-space limit; or ``memory_limit``, bytes per rank; inf: no check) only
    decides whether a plan is refused."""
    comm = Comm.of(comm)
    per_node = comm.ranks_on_node()
    if memory_limit is not None:
        avail = target = float(memory_limit)
        how = "the memory limit"
    else:
        avail = available_memory(per_node)
        target = share * machine_memory()
        how = (f"available; auto options aim at {share:.0%} of the machine's "
               f"{_gb(machine_memory())}")
    avail, target = comm.min(avail), comm.min(target)
    return float(avail), float(target), how


def plan_newton(widths, loss, n_total, *, precond, name=None, curvature_samples=AUTO,
                hss_samples=AUTO, leaf_size=AUTO, available, target,
                budget_source="available", **kw):
    """Fill the "auto" options so the estimate of one process holding the whole
    command, with the ``MARGIN``, fits ``target`` bytes (the same choice on any
    number of ranks): of every combination of their ladders that fits, the one with
    the largest product of curvature samples, products and leaf size (the
    preconditioner's accuracy grows with each; ties: the smaller peak); if none
    fits, the floors. Raises :class:`MemoryPlanError` when the estimate of one rank
    (``ranks``, ``distributed`` in ``kw``) exceeds ``available`` (naming the
    explicit option that weighs most, or the parts beyond the options' reach)."""
    ladders = {"curvature_samples": CURVATURE_LADDER, "hss_samples": SAMPLES_LADDER,
               "leaf_size": LEAF_LADDER}
    if precond != "hss":
        ladders = {} if precond == "none" else {"curvature_samples": CURVATURE_LADDER}
        hss_samples = leaf_size = None
        if precond == "none":
            curvature_samples = None
    elif kw.get("projections") is not None:    # H~ from the CG batch, projected
        del ladders["curvature_samples"]
        curvature_samples = None
    opts = {"curvature_samples": curvature_samples, "hss_samples": hss_samples,
            "leaf_size": leaf_size}
    auto = tuple(k for k in ladders if opts[k] == AUTO)

    one = dict(kw, ranks=1, distributed=False)

    def est(o, per_rank=True):
        return estimate_newton(widths, loss, n_total, precond=precond,
                               curvature_samples=o["curvature_samples"],
                               hss_samples=o["hss_samples"] or 0,
                               leaf_size=o["leaf_size"] or 128,
                               **(kw if per_rank else one))
    best = None
    for combo in itertools.product(*(ladders[k] for k in auto)):
        o = dict(opts, **dict(zip(auto, combo)))
        e = est(o, per_rank=False)
        score = (e.peak * MARGIN <= target, math.prod(combo), -e.peak)
        if best is None or score > best[0]:
            best = (score, o, e)
    if best is None:
        e = est(opts)
    else:
        _, opts, e = best
        if not best[0][0]:                 # nothing fits the target: the floors
            opts = dict(opts, **{k: ladders[k][-1] for k in auto})
    e = est(opts)
    if e.peak > available:
        # explicit options that a smaller value would lower (0 products is the
        # entries path, None every sample: both count as the largest)
        explicit = [k for k in ladders if k not in auto and opts[k] != 0]
        floors = dict(opts, **{k: ladders[k][-1] for k in explicit})
        if explicit and est(floors).peak <= available:
            def smaller(k):
                v = opts[k]
                return ladders[k][0] if v is None else max(1, int(v) // 2)
            # the explicit option whose lowering lowers the estimate most
            k = min(explicit, key=lambda k: est(dict(opts, **{k: smaller(k)})).peak)
            now = "every sample" if opts[k] is None else opts[k]
            hint = f" Lower {OPTION_NAMES[k]} (now {now}), or leave it to auto."
        else:
            hint = (" Even the smallest preconditioner options would not fit: lower "
                    "what they do not change, the data and the CG products' forward "
                    "cache (cg_batch (--cg-batch), batch_size (--batch-size)), or use "
                    "more ranks.")
        raise MemoryPlanError(
            f"{name or precond}: the options would need about "
            f"{e.describe()} per rank, and {_gb(available)} is available "
            f"({budget_source}).{hint}")
    return MemoryPlan({k: opts[k] for k in ("curvature_samples", "hss_samples",
                                            "leaf_size") if opts[k] is not None},
                      e, available, budget_source, auto, target)
