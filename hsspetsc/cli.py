"""Command line: ``python -m hsspetsc {compress,train} ...`` (see ``--help``).

    python -m hsspetsc compress --matrix K02 --n 16384 --tol 1e-5 --out H.npz \
        --plot H.png
    python -m hsspetsc compress --points X.npy --kernel gaussian --bandwidth 0.2
    mpiexec -n 2 python -m hsspetsc train --data fashion-mnist --n 2000 \
        --layers 784,32,784 --optimizer newton-hss --steps 20 --log run.json \
        -pc_hss_tol 1e-3 -newton_hss_ksp_monitor

Options the parser does not know (single dash, e.g. -ksp_monitor, -pc_hss_tol) go to
PETSc. Without a prefix, -ksp_* and -pc_hss_* options apply to the Newton solvers
(newton_hss_ / newton_cg_ prefixes are also accepted).
"""
import argparse
import os
import signal
import sys
import time

import numpy as np

from . import compress, gallery, relative_error, tune
from .compression.params import SPEC
from .mlp import MLP
from .mlp.data import train_validation_split
from .mpi.comm import CollectiveError, Comm
from .training.distributed import ShardedProblem
from .training.run import (
    FIRST_ORDER,
    OPTIMIZER_NAMES,
    SECOND_ORDER,
    TIME_SPLIT,
    Trainer,
    choose_learning_rate,
    run,
    write_log,
)
from .util.threads import threads_per_rank
from .util.validation import check_float, check_int, check_writable
from .version import __version__


def _parser():
    p = argparse.ArgumentParser(prog="python -m hsspetsc", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"hsspetsc {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compress", help="compress a matrix: level table, error, memory, "
                       "time; save it (.npz) and draw it (.png)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--matrix", help="a test-suite matrix: K02 ... K18, COV")
    src.add_argument("--npy", help="a dense symmetric matrix in a .npy file")
    src.add_argument("--points", help="points (N x d) in a .npy file, with --kernel")
    c.add_argument("--n", type=int, default=4096, help="order of the --matrix")
    c.add_argument("--kernel", default="gaussian",
                   help="kernel for --points: gaussian, laplace, matern32, imq, polynomial")
    c.add_argument("--bandwidth", type=float, default=1.0, help="kernel bandwidth h")
    c.add_argument("--shift", type=float, default=0.0, help="kernel diagonal shift")
    for name in ("tol", "leaf_size", "max_rank", "neighbors", "budget", "distance",
                 "seed"):
        spec = SPEC[name]
        c.add_argument("--" + name.replace("_", "-"), type=spec.kind, default=spec.default,
                       help=spec.help)
    c.add_argument("--no-spd", action="store_true",
                   help="keep H~ as compressed (no positive semi-definite compensation)")
    c.add_argument("--auto", action="store_true",
                   help="choose leaf size, neighbours and near field with tune()")
    c.add_argument("--threads", type=int, default=None, help="OpenMP threads")
    c.add_argument("--out", default=None, help="save H~ here (.npz; hsspetsc.load)")
    c.add_argument("--plot", default=None, help="draw the block structure (PNG)")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    t = sub.add_parser(
        "train", help="train an MLP (autoencoder or classifier)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Single-dash options go to PETSc: -ksp_monitor, -pc_hss_tol 1e-3, "
               "-pc_hss_help ... (also under the prefixes newton_hss_, newton_cg_, "
               "newton_hf_, newton_kfac_); -help lists the -pc_hss_* options. A negative "
               "number is always a value. Stops at the first of --steps, --epochs and "
               "--time-budget (10 steps when none is given).")
    t.add_argument("--data", choices=["digits", "fashion-mnist"], default="digits",
                   help="data set")
    t.add_argument("--n", type=int, default=1000, help="training samples")
    t.add_argument("--layers", default=None,
                   help="widths, e.g. 784,32,784 (default: in,32,in autoencoder)")
    t.add_argument("--activation", default="tanh", help="hidden-layer activation")
    t.add_argument("--loss", choices=["mse", "cross_entropy"], default="mse",
                   help="mse: autoencoder (target = input); cross_entropy: classifier")
    t.add_argument("--optimizer", default="newton-hss",
                   help="Gauss-Newton with CG: newton-hss (HSSPC), newton-cg (no "
                        "preconditioner), newton-hf (Martens' diagonal), newton-kfac (KFAC); "
                        "lbfgs; first order: adam, sgd, momentum, nag, adagrad, rmsprop")
    t.add_argument("--compare", default=None,
                   help="comma-separated optimizers run one after another on the same data")
    t.add_argument("--steps", type=int, default=None, help="steps per optimizer")
    t.add_argument("--epochs", type=float, default=None,
                   help="data passes per optimizer (a gradient is 1, a loss 0.5, a "
                        "Gauss-Newton product 1)")
    t.add_argument("--time-budget", type=float, default=None,
                   help="seconds of optimizer time per optimizer")
    t.add_argument("--lr", type=float, default=1e-2, help="first-order learning rate")
    t.add_argument("--lr-grid", default=None,
                   help="first-order optimizers only: try these learning rates (comma-"
                        "separated; replaces --lr) on a short trial each (a tenth of the "
                        "run) and train with the best; the trials are reported, not counted "
                        "in the run's time")
    t.add_argument("--validation", type=float, default=0.1,
                   help="hold out this fraction of --n more samples (the next ones, never "
                        "trained on; fewer when the data set ends) for a validation loss "
                        "(and accuracy) per step; 0: none")
    t.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch: first-order methods per rank, Newton methods in all "
                        "(one stream keyed by the step: the same on any number of ranks); "
                        "default full batch")
    t.add_argument("--eval-every", type=float, default=0.0, metavar="S",
                   help="with --batch-size: evaluate the full training (and validation) "
                        "loss for the log at most every S seconds of optimizer time "
                        "(default 0: every step; not counted as optimizer time)")
    t.add_argument("--batch-growth", type=float, default=1.0,
                   help="Newton methods: the mini-batch grows by this factor per step")
    t.add_argument("--cg-batch", type=int, default=None,
                   help="Newton methods: the CG operator's Gauss-Newton products on this "
                        "many samples of the gradient mini-batch (Martens: about 1/10)")
    t.add_argument("--cg-warm-start", type=float, default=0.0,
                   help="Newton methods: CG starts from this times the previous step's CG "
                        "solution (Martens: 0.95; 0: from zero)")
    t.add_argument("--cg-backtrack", action="store_true",
                   help="Newton methods: take the CG iterate chosen by Martens' "
                        "backtracking on the mini-batch objective, not the last")
    t.add_argument("--cg-stop", choices=("forcing", "martens"), default="forcing",
                   help="Newton methods: CG ends when the residual meets the forcing term "
                        "(Eisenstat-Walker), or on Martens' relative progress of the "
                        "quadratic model (the test to pair with --cg-warm-start)")
    t.add_argument("--lam", type=float, default=1.0, help="initial Newton damping")
    t.add_argument("--rebuild", type=int, default=20,
                   help="newton-hss: compress H~ again (new tree and skeletons) at least "
                        "every k steps")
    t.add_argument("--rebuild-lost-its", type=int, default=80,
                   help="newton-hss: compress again once the CG iterations lost to an "
                        "aging H~ (beyond the fresh H~'s rate) exceed this many, about a "
                        "compression's cost in iterations (0: only every --rebuild steps)")
    t.add_argument("--refresh", action="store_true",
                   help="newton-hss: between compressions read the blocks of H~ again at "
                        "the new parameters (same tree and skeletons; default: keep H~)")
    t.add_argument("--pc-layout", choices=("auto", "distributed", "replicated"),
                   default="auto",
                   help="newton-hss under mpiexec: H~ stored across the ranks (each its "
                        "subtree) or whole on every rank; auto: distributed with more "
                        "than one rank when sketched and not refreshed")
    t.add_argument("--cg-max-it", type=int, default=50, help="CG iterations per Newton step")
    t.add_argument("--curvature-samples", "--entry-samples", dest="curvature_samples",
                   type=_int_or_auto, default="auto",
                   help="Newton preconditioners: curvature from a mini-batch of this many "
                        "samples (the same on any number of ranks; newton-hf and -kfac draw "
                        "one every step, newton-hss at every compression); the CG operator "
                        "uses every sample. auto (default): the largest of 256 down to 8 "
                        "that the memory plan fits")
    t.add_argument("--hss-samples", type=_int_or_auto, default="auto",
                   help="newton-hss: build H~ from this many products of the curvature "
                        "mini-batch's Gauss-Newton matrix (compress_sketch); 0: from its "
                        "entries (compress). auto (default): 128 down to 16, as the memory "
                        "plan fits (the leaf size too, 128 down to 32, unless "
                        "-pc_hss_leaf_size is given)")
    t.add_argument("--memory-limit", type=float, default=None, metavar="GiB",
                   help="Newton methods: memory one rank may use, in GiB; auto options "
                        "fit it (default: what the machine has available decides, and "
                        "auto options aim at a quarter of its memory). Options that "
                        "would not fit stop the run before it starts")
    t.add_argument("--hss-shift-aware", type=float, default=None, metavar="C",
                   help="newton-hss: compress H~ for the damping lambda it is factored "
                        "with, |H - H~| <= C lambda (default: tol relative to |H~|)")
    t.add_argument("--hss-projections", type=int, default=None, metavar="R",
                   help="newton-hss: H~ from the CG batch's own curvature, each sample's "
                        "by R Gaussian projections of its outputs (then "
                        "--curvature-samples serves newton-hf and -kfac only)")
    t.add_argument("--seed", type=int, default=0, help="initial weights and shuffling")
    t.add_argument("--log", default=None, help="JSON list of per-step records")
    t.add_argument("--plot", default=None, help="PNG: loss against time and data passes")
    t.add_argument("--checkpoint", default=None, help="save state after every step")
    t.add_argument("--resume", default=None, help="continue from a checkpoint")
    return p


def plot_histories(records, path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = list(dict.fromkeys(r["optimizer"] for r in records))
    for name in names:
        # the evaluated states (mini-batch steps between evaluations have no loss)
        rs = [r for r in records if r["optimizer"] == name and r.get("loss") is not None]
        t, d = [r["time"] for r in rs], [r["data_passes"] for r in rs]
        line, = axes[0].semilogy(t, [r["loss"] for r in rs], label=name)
        axes[1].semilogy(d, [r["loss"] for r in rs], label=name, color=line.get_color())
        if all(r.get("val_loss") is not None for r in rs):
            for ax, x in ((axes[0], t), (axes[1], d)):
                ax.semilogy(x, [r["val_loss"] for r in rs], "--", color=line.get_color(),
                            alpha=0.6, label="_nolegend_")
    # the end game, where the methods differ: from just below the best loss to a few
    # times the worst final loss (the first steps of every run leave the frame)
    finals = [r["loss"] for r in records if r.get("final") and r.get("loss") is not None]
    lows = [r[k] for r in records for k in ("loss", "val_loss")
            if r.get(k) is not None and np.isfinite(r[k])]
    if finals and lows and min(lows) > 0:
        axes[0].set_ylim(0.97 * min(lows), min(max(lows), 1.5 * max(finals)))
    axes[0].set_xlabel("time (s)")
    axes[1].set_xscale("symlog", linthresh=1.0)
    axes[1].set_xlabel("data passes (log scale)")
    for ax in axes:
        ax.set_ylabel("loss (solid: training, dashed: validation)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _loss_text(v):
    """A loss for a table: fixed point, scientific when huge, '-' when unknown."""
    if v is None:
        return "-"
    return f"{v:.6f}" if abs(v) < 1e6 else f"{v:.4e}"


def first_to_reach(records, n_levels=4):
    """Lines naming, for loss levels between the common start and the best final
    loss, which optimizer reached each level first (optimizer time), with the
    others' times ('-': never). Levels are evenly spaced in log(loss - best), plus
    the worst and the second-best final losses."""
    names = list(dict.fromkeys(r["optimizer"] for r in records))
    if len(names) < 2:
        return ""
    runs = {n: [(r["time"], r["loss"]) for r in records
                if r["optimizer"] == n and r.get("loss") is not None] for n in names}
    start = min(run[0][1] for run in runs.values() if run)
    best = min(min(l for _, l in run) for run in runs.values() if run)
    worst_final = max(run[-1][1] for run in runs.values() if run)
    if not start > best:
        return ""
    # from just below the start to the best final loss; the level every run reached
    # (the worst final loss) is included so the table is never empty
    # and the runner-up's final loss: who got there first, and how much sooner
    finals = sorted(trace[-1][1] for trace in runs.values() if trace)
    levels = sorted({best + (start - best) * f for f in
                     np.geomspace(0.5, 1e-3, n_levels)} | {worst_final, finals[1]},
                    reverse=True)
    lines = ["first to reach (optimizer time):"]
    for level in levels:
        times = {}
        for n, trace in runs.items():
            hit = [t for t, l in trace if l <= level]
            times[n] = hit[0] if hit else None
        reached = {n: t for n, t in times.items() if t is not None}
        if not reached:
            continue
        first = min(reached, key=reached.get)
        others = ", ".join(f"{n} {'-' if t is None else f'{t:.1f} s'}"
                           for n, t in times.items() if n != first)
        lines.append(f"  loss <= {_loss_text(level)}: {first} at {reached[first]:.1f} s "
                     f"({others})")
    return "\n".join(lines)


def summary_table(records):
    """One line per optimizer: steps, final loss (and validation loss/accuracy when
    logged), data passes, time, mean CG iterations, and the time split of the
    Newton steps."""
    names = list(dict.fromkeys(r["optimizer"] for r in records))
    has_val = any(r.get("val_loss") is not None for r in records)
    has_acc = any(r.get("val_accuracy") is not None for r in records)
    val_head = (f" {'val loss':>9}" if has_val else "") + (f" {'val acc':>7}" if has_acc
                                                          else "")
    lines = [f"{'optimizer':<11} {'steps':>6} {'final loss':>11}{val_head} "
             f"{'data passes':>12} {'time s':>8} {'mean CG its':>11}   time split s: grad "
             f"/ compress / refresh / factor / CG / other"]
    for name in names:
        rs = [r for r in records if r["optimizer"] == name]
        cg = [r["cg_iterations"] for r in rs if not r.get("final")] or [0]
        split = ""
        if name.startswith("newton"):
            split = " / ".join(f"{sum(r.get(k) or 0.0 for r in rs):.2f}" for k in TIME_SPLIT)
        val = ""
        if has_val:
            val += f" {_loss_text(rs[-1].get('val_loss')):>9}"
        if has_acc:
            acc = rs[-1].get("val_accuracy")
            val += f" {'-' if acc is None else f'{acc:.3f}':>7}"
        lines.append(f"{name:<11} {rs[-1]['iteration']:>6} {_loss_text(rs[-1]['loss']):>11}"
                     f"{val} {rs[-1]['data_passes']:>12.1f} {rs[-1]['time']:>8.2f} "
                     f"{(sum(cg) / len(cg)) if name.startswith('newton') else 0:>11.1f}   "
                     f"{split}")
    return "\n".join(lines)


def _prefix_petsc_options(PETSc):
    """Copy un-prefixed -ksp_* / -pc_hss_* options to the Newton solvers' prefixes."""
    opts = PETSc.Options()
    for key, val in list(opts.getAll().items()):
        if key.startswith("ksp_") or key.startswith("pc_hss_"):
            for prefix in ("newton_hss_", "newton_cg_"):
                if not opts.hasName(prefix + key) and not (
                        prefix == "newton_cg_" and key.startswith("pc_hss_")):
                    opts[prefix + key] = val


def compress_main(args):
    """Compress, report, save and draw (no PETSc)."""


    if args.matrix:
        src = gallery.testsuite(args.matrix, args.n)
    elif args.npy:
        src = np.load(args.npy, allow_pickle=False)
    else:
        src = gallery.kernel_matrix(np.load(args.points, allow_pickle=False), args.kernel,
                                    bandwidth=args.bandwidth, shift=args.shift)
    kw = dict(tol=args.tol, leaf_size=args.leaf_size, max_rank=args.max_rank,
              neighbors=args.neighbors, budget=args.budget, distance=args.distance,
              seed=args.seed, spd=not args.no_spd, n_threads=args.threads)
    t0 = time.perf_counter()
    if args.auto:
        tuned = tune(src, tol=args.tol, seed=args.seed)
        if not args.quiet:
            print(tuned.table(), flush=True)
        kw.update(tuned)
    H = compress(src, verbose=not args.quiet, **kw)
    elapsed = time.perf_counter() - t0
    if args.quiet:
        print(repr(H))
    err = relative_error(H, src, nrows=100, exact_max_n=0)["eps2"]
    s = H.stats()
    print(f"eps2 = {err:.2e} (100 exact rows; tol {args.tol:.0e}), error estimate "
          f"{s['error_estimate']:.2e}; {s['stored_bytes'] / 1e6:.1f} MB "
          f"({s['dense_bytes'] / max(s['stored_bytes'], 1):.1f}x smaller than dense); "
          f"{elapsed:.2f} s", flush=True)
    if args.out:
        print(f"wrote {H.save(args.out)}")
    if args.plot:
        H.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0


def _int_or_auto(text):
    return "auto" if text.strip().lower() == "auto" else int(text)


_int_or_auto.__name__ = "integer or 'auto'"      # argparse's "invalid ... value"


# (option, type, lower bound, open?) of the training command's numbers
_TRAIN_NUMBERS = (("n", int, 1, False), ("steps", int, 1, False),
                  ("time_budget", float, 0.0, True), ("epochs", float, 0.0, True),
                  ("lr", float, 0.0, True),
                  ("batch_size", int, 1, False), ("lam", float, 0.0, True),
                  ("rebuild", int, 1, False), ("cg_max_it", int, 1, False),
                  ("curvature_samples", int, 1, False), ("hss_samples", int, 0, False),
                  ("seed", int, 0, False), ("rebuild_lost_its", int, 0, False),
                  ("validation", float, 0.0, False), ("batch_growth", float, 1.0, False),
                  ("cg_batch", int, 1, False), ("cg_warm_start", float, 0.0, False),
                  ("hss_shift_aware", float, 0.0, True), ("memory_limit", float, 0.0, True),
                  ("hss_projections", int, 1, False),
                  ("eval_every", float, 0.0, False))


def _check_train_args(args):
    """Every number of the training command in its range (the library's message
    template), the layers parseable, before anything runs."""
    where = "python -m hsspetsc train"
    for name, kind, lo, lo_open in _TRAIN_NUMBERS:
        value = getattr(args, name)
        if value is None or value == "auto":
            continue
        if kind is int:
            check_int(value, name.replace("_", "-"), where, lo=lo)
        else:
            check_float(value, name.replace("_", "-"), where, lo=lo, lo_open=lo_open)
    if args.layers is not None:
        try:
            widths = [int(w) for w in args.layers.split(",")]
        except ValueError:
            raise ValueError(f"The 'layers' parameter of {where} must be widths like "
                             f"784,32,784. Got {args.layers!r} instead.") from None
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"The 'layers' parameter of {where} needs at least two "
                             f"positive widths. Got {args.layers!r} instead.")
    if args.validation >= 1.0:
        raise ValueError(f"The 'validation' parameter of {where} must be a float in the "
                         f"range [0.0, 1.0). Got {args.validation!r} instead.")
    if args.lr_grid is not None:
        args.lr_grid = _parse_lr_grid(args.lr_grid, where)


def _parse_lr_grid(text, where):
    try:
        lrs = [float(v) for v in text.split(",")]
    except ValueError:
        lrs = []
    if not lrs or not all(np.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"The 'lr-grid' parameter of {where} must be positive learning "
                         f"rates like 1e-3,3e-3,1e-2. Got {text!r} instead.")
    return lrs


def _install_signal_handlers():
    """SIGTERM (what mpiexec sends on Ctrl-C) ends the run like Ctrl-C does: the
    log is written, then the process exits."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def train_main(args, petsc_argv):
    import petsc4py
    petsc4py.init([sys.argv[0]] + petsc_argv)
    from petsc4py import PETSc

    comm = Comm.of(PETSc.COMM_WORLD)          # the one communicator of the command
    say = (lambda s: PETSc.Sys.Print(s))
    if comm.size > 1:
        n, chosen = threads_per_rank(comm)
        if chosen:
            say(f"threads per rank: {n} (cores // ranks on the node; set OMP_NUM_THREADS "
                f"to choose)")
    _install_signal_handlers()
    try:
        # the ranks must run the same command: compare them before any work
        comm.check_same(repr(sorted((k, v) for k, v in vars(args).items()
                                    if k not in ("log", "plot", "checkpoint")))
                        + repr(petsc_argv), "the command line")
        comm.run(_check_train_args, args)
        comm.run(_check_outputs, args, comm.rank)
        return _train(args, comm, say, PETSc)
    except (CollectiveError, ValueError, OSError) as exc:
        # every rank says it (each exits cleanly, none is left waiting)
        where = f" (rank {comm.rank} of {comm.size})" if comm.size > 1 else ""
        sys.stderr.write(f"hsspetsc train: error{where}: {exc}\n")    # one write
        sys.stderr.flush()
        if isinstance(exc, CollectiveError) and comm.size > 1 and not comm.peers_leaving:
            # an agreed error: every rank is here and alive; let each one print
            # before any exits (mpiexec ends the job at the first non-zero exit)
            comm.barrier()
        return 1
    except (KeyboardInterrupt, SystemExit) as exc:
        code = exc.code if isinstance(exc, SystemExit) else 130
        if comm.size > 1 and code == 130:
            # interrupted (the log is written): leave now. The signal may have
            # reached this rank only; MPI_Finalize would then wait for ranks that
            # wait for us, while an exit without it makes mpiexec end the job.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise


def _check_outputs(args, rank):
    if rank == 0:
        check_writable(args.log, "--log")
        check_writable(args.plot, "--plot")
        check_writable(args.checkpoint, "--checkpoint")
    if args.resume is not None and not os.path.isfile(args.resume):
        raise ValueError(f"--resume {args.resume}: no such file")


def _train(args, comm, say, PETSc):

    _prefix_petsc_options(PETSc)
    n_val = int(round(args.validation * args.n))
    X, y, Xv, yv = comm.run(train_validation_split, args.data, args.n, n_val,
                                 clip=True)
    n_val = Xv.shape[0]              # what was left after the training samples
    if args.loss == "mse":
        Y, Yv = X, Xv
        widths = ([X.shape[1], 32, X.shape[1]] if args.layers is None
                  else [int(w) for w in args.layers.split(",")])
    else:
        Y, Yv = y, yv
        widths = ([X.shape[1], 32, 10] if args.layers is None
                  else [int(w) for w in args.layers.split(",")])
    names = args.compare.split(",") if args.compare else [args.optimizer]

    def check_net():
        for nm in names:
            if nm not in OPTIMIZER_NAMES:
                raise ValueError(f"unknown optimizer {nm!r}; choose from "
                                 f"{', '.join(OPTIMIZER_NAMES)}")
        out = 10 if args.loss == "cross_entropy" else X.shape[1]
        if widths[0] != X.shape[1] or widths[-1] != out:
            hint = ""
            if args.loss == "mse" and widths[-1] == 10:
                hint = " For a classifier (10 classes) use --loss cross_entropy."
            elif args.loss == "cross_entropy" and widths[-1] == X.shape[1]:
                hint = " For an autoencoder use --loss mse."
            raise ValueError(f"--layers {','.join(map(str, widths))}: the first width "
                             f"must be the input size {X.shape[1]} and the last the "
                             f"output size {out} of --data {args.data} with --loss "
                             f"{args.loss}.{hint}")
    comm.run(check_net)
    if args.steps is None and args.time_budget is None and args.epochs is None:
        args.steps = 10
    all_records = []
    say(f"hsspetsc train: {args.data}, {X.shape[0]} samples on {comm.size} rank(s)"
        f"{f' ({Xv.shape[0]} more held out for validation)' if n_val else ''}, "
        f"net {widths}, loss {args.loss}")
    validation = (Xv, Yv) if n_val else None

    def make_trainer(nm, lr):
        model = MLP(widths, activation=args.activation, loss=args.loss, seed=args.seed)
        problem = ShardedProblem(model, X, Y, comm=comm)
        if comm.size > 1:
            problem.comm = comm          # one error state for the whole command
        newton = {"lam": args.lam, "rebuild": args.rebuild, "cg_max_it": args.cg_max_it,
                  "curvature_samples": args.curvature_samples,
                  "hss_samples": args.hss_samples, "refresh": args.refresh,
                  "rebuild_lost_its": args.rebuild_lost_its, "progress": say,
                  "pc_layout": args.pc_layout, "batch_growth": args.batch_growth,
                  "cg_batch": args.cg_batch, "cg_warm_start": args.cg_warm_start,
                  "cg_backtrack": args.cg_backtrack, "cg_stop": args.cg_stop,
                  "hss_shift_aware": args.hss_shift_aware,
                  "hss_projections": args.hss_projections,
                  "memory_limit": None if args.memory_limit is None
                  else args.memory_limit * 2.0 ** 30}
        return comm.run(Trainer, problem, nm, lr=lr,
                             batch_size=args.batch_size, newton=newton, seed=args.seed,
                             validation=validation, eval_every=args.eval_every)

    # the memory plan of every Newton method before anything is trained: options
    # that do not fit stop the command here, on every rank, the log untouched
    for nm in dict.fromkeys(names):
        if nm in SECOND_ORDER:
            tr = make_trainer(nm, args.lr)
            try:
                say(tr.nk.memory_plan.line(nm))
            finally:
                tr.destroy()
    for nm in names:
        lr = args.lr
        if args.lr_grid and nm in FIRST_ORDER:
            lr = _choose_lr(nm, args, make_trainer, say)
        tr = make_trainer(nm, lr)
        log = args.log if len(names) == 1 else None
        try:
            if args.resume:
                comm.run(tr.load, args.resume)
                say(f"resumed {nm} from {args.resume} at step {tr.step_count}")
            run(tr, max_steps=args.steps, time_budget=args.time_budget, log=log,
                checkpoint=args.checkpoint, printer=say, max_passes=args.epochs)
        except FloatingPointError as exc:
            say(f"stopped: {exc}")
        except KeyboardInterrupt:
            say(f"interrupted: {len(tr.records)} steps logged")
            all_records += tr.records
            if comm.rank == 0 and args.log and len(names) > 1:
                write_log(args.log, all_records)
            tr.destroy()
            raise SystemExit(130)
        finally:
            tr.destroy()
        all_records += tr.records
        if comm.rank == 0 and args.log and len(names) > 1:
            write_log(args.log, all_records)
    if all_records:
        say(summary_table(all_records))
        reach = first_to_reach(all_records)
        if reach:
            say(reach)
    if args.plot and comm.rank == 0 and all_records:
        plot_histories(all_records, args.plot,
                       f"{args.data}: net {widths}, {X.shape[0]} samples")
        say(f"wrote {args.plot}")
    return 0


def _choose_lr(name, args, make_trainer, say):
    """The learning rate of ``args.lr_grid`` with the lowest training loss after a
    trial of a tenth of the run (budget, steps or epochs; 10 steps when none)."""
    trial = {"time_budget": None if args.time_budget is None else args.time_budget / 10,
             "max_steps": None if args.steps is None else max(1, args.steps // 10),
             "max_passes": None if args.epochs is None else args.epochs / 10}
    if all(v is None for v in trial.values()):
        trial["max_steps"] = 10
    best, results = choose_learning_rate(lambda lr: make_trainer(name, lr), args.lr_grid,
                                         **trial)
    say(f"{name}: learning rate {best:g} chosen from " + ", ".join(
        f"{lr:g} ({_loss_text(v)})" for lr, v in results) + " (loss after a trial of "
        "a tenth of the run each; trials not counted)")
    return best


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # argparse's own options use "--"; single-dash options (and their value) go to PETSc
    petsc_argv, ours, i = [], [], 0
    rest = list(argv)
    # a negative number is a value, never an option
    while i < len(rest):
        a = rest[i]
        if (a.startswith("-") and not a.startswith("--") and a not in ("-h",)
                and not _is_number(a)):
            petsc_argv.append(a)
            if i + 1 < len(rest) and (not rest[i + 1].startswith("-")
                                      or _is_number(rest[i + 1])):
                petsc_argv.append(rest[i + 1])
                i += 1
        else:
            ours.append(a)
        i += 1
    args = _parser().parse_args(ours)
    if args.command == "compress":
        if petsc_argv:
            _parser().error(f"compress takes no PETSc options: {' '.join(petsc_argv)}")
        try:
            check_writable(args.out, "--out")
            check_writable(args.plot, "--plot")
            return compress_main(args)
        except (ValueError, OSError) as exc:
            sys.stderr.write(f"hsspetsc compress: error: {exc}\n")
            return 1
    if args.command == "train":
        return train_main(args, petsc_argv)
    return 1
