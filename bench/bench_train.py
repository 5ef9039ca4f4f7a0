"""Training benchmark (not a test): does the HSS preconditioner pay for itself?

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py [--budget 30] [--nets c]
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py --nets dae --budget 1200 \
        --no-system --batch-size 200 --newton-batch 10000 --cg-batch 1000 \
        --cg-warm-start 0.95 --cg-stop martens --cg-backtrack \
        --out bench/bench_train_dae.json

The second is the deep autoencoder at the literature's scale: all 60 000
Fashion-MNIST training images, the 10 000 test images held out, 20 minutes per
method on 2 cores (about 2.5 hours in all with the learning-rate trials; give
``--budget`` less for a shorter look, the command is recorded with the figures).

Part 1, one and the same system (H + lambda I) p = -g and forcing term, at the
initial parameters and after a few Newton-CG steps: CG iterations with no
preconditioner, Martens' diagonal (hf), KFAC and HSSPC (the trainer's defaults;
hss*: a more accurate H~ from 256 products of a 512-image mini-batch at tol 1e-3),
and the set-up time of each.

Part 2, the same optimizer-time budget per method (one process): newton-hss,
newton-cg, newton-hf, newton-kfac, lbfgs and adam (learning rate chosen from a grid
by trials of a tenth of the budget, not counted). Per method: final loss, steps,
data passes, mean CG iterations, the time split of the Newton steps, and the time and
data passes to reach Adam's and newton-cg's final losses. The targets of the
training issue are checked at the end, each with the figure that decides it.

Nets: (c) the 784-32-784 autoencoder of ``make demo`` (tanh, 2000 Fashion-MNIST
images, the next 200 held out); (dae) the deep autoencoder of Hinton &
Salakhutdinov (2006), used by Martens' Hessian-free and by K-FAC:
784-1000-500-250-30-250-500-1000-784, logistic units, a linear 30-unit code, about
2.8 M weights, on ``--dae-n`` training images (default all 60 000) with the test
images held out. Besides the trainer's loss (half the squared error, mean over the
images) the tables give the error as Martens (2010) reports it: the squared error
per image summed over the pixels (twice the loss).

Practice of the literature, optional and for every method alike: first-order
methods on mini-batches (``--batch-size``; Adam and Nesterov momentum, each with its
rate from a grid); Newton methods with gradients on a mini-batch
(``--newton-batch``), CG products on a sub-batch of it (``--cg-batch``), CG warm
start and backtracking. With mini-batches the full training and held-out losses
are evaluated every ``--eval-every`` seconds of optimizer time (default a
twentieth of the budget; not counted). Per method: the peak resident memory of
the process during its run (VmHWM, reset before each), and the time and data
passes to fixed training-error levels.
Writes JSON (``--out``) and a plot per net next to this file.
"""
import argparse
import os
import sys
import time
import warnings

import petsc4py

petsc4py.init([sys.argv[0]])
import numpy as np  # noqa: E402
from _results import write_results  # noqa: E402

from hsspetsc.cli import first_to_reach, plot_histories  # noqa: E402
from hsspetsc.mlp import MLP, load  # noqa: E402
from hsspetsc.training import ShardedProblem, Trainer, run  # noqa: E402
from hsspetsc.training.newton import NewtonKrylov, options_for  # noqa: E402
from hsspetsc.training.run import TIME_SPLIT, choose_learning_rate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DAE = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
DAE_ACTS = ["sigmoid"] * 3 + ["identity"] + ["sigmoid"] * 3
METHODS = ("newton-hss", "newton-cg", "newton-hf", "newton-kfac", "lbfgs", "adam")
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
# Nesterov momentum (mu 0.9): a wider grid than Adam's (on the deep autoencoder every
# rate up to 1e-2 stayed on the mean-image plateau)
NAG_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
GRIDS = {"adam": LR_GRID, "nag": NAG_GRID}
PCS = ("none", "hf", "kfac", "hss", "hss*")
# hss*: a more accurate H~ than the trainer's default (what fewer iterations cost)
ACCURATE = {"curvature_samples": 512, "hss_samples": 256,
            "compress_params": {"tol": 1e-3}}


def net(key, n_dae):
    """(widths, activation, output, n samples) of a benchmark net."""
    if key == "c":
        return [784, 32, 784], "tanh", "identity", 2000
    if key == "dae":
        return DAE, DAE_ACTS, "sigmoid", n_dae
    raise SystemExit(f"unknown net {key!r} (c, dae)")


def net_data(key, n):
    """(training images, held-out images): the dae holds out the test split, (c)
    the next n/10 training images (as its earlier figures)."""
    if key == "dae":
        return load("fashion-mnist", n)[0], load("fashion-mnist", split="test")[0]
    Xall, _ = load("fashion-mnist", n + n // 10)
    return Xall[:n], Xall[n:]


def reset_peak_memory():
    """Start a new peak of the resident set (Linux: VmHWM); False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_gb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def make_model(key, n_dae, seed=0):
    widths, act, out, _ = net(key, n_dae)
    return MLP(widths, activation=act, output=out, loss="mse", seed=seed)


def first_reach(recs, target):
    for r in recs:
        if r.get("loss") is not None and r["loss"] <= target:
            return r["time"], r["data_passes"]
    return None, None


def error_levels(recs_all, per_decade=3):
    """Fixed training-error levels (Martens' error, twice the loss) from just below
    the common start to the best final error: the 1-2-5 (per_decade 3) numbers."""
    losses = [r["loss"] for r in recs_all if r.get("loss") is not None]
    start = min(r["loss"] for r in recs_all if r["iteration"] == 0
                and r.get("loss") is not None)
    best = min(losses)
    steps = {3: (1, 2, 5), 2: (1, 3)}[per_decade]
    lo, hi = int(np.floor(np.log10(2 * best))), int(np.ceil(np.log10(2 * start)))
    return sorted((m * 10.0 ** e for e in range(lo, hi + 1) for m in steps
                   if 2 * best <= m * 10.0 ** e < 2 * start), reverse=True)


def level_table(recs_all):
    """Per method and error level: (optimizer time, data passes) of the first
    evaluated state at or below it."""
    levels = error_levels(recs_all)
    methods = list(dict.fromkeys(r["optimizer"] for r in recs_all))
    table = {m: [first_reach([r for r in recs_all if r["optimizer"] == m], lv / 2)
                 for lv in levels] for m in methods}
    print("\ntime s / data passes to a training error (squared error per image, "
          "summed over the pixels):")
    print(f"{'method':<11} " + " ".join(f"{f'<= {lv:g}':>14}" for lv in levels))
    for m in methods:
        print(f"{m:<11} " + " ".join(
            f"{'-':>14}" if t is None else f"{f'{t:.0f} / {p:.1f}':>14}"
            for t, p in table[m]))
    return {"levels": levels, "methods": {m: [{"time": t, "passes": p}
                                              for t, p in v] for m, v in table.items()}}


def same_system_rows(key, X, n_dae, newton_kw, forcing=1e-2, lam_rel=(1e-1, 1e-3)):
    """CG iterations of every preconditioner on one system at two points."""
    rows = []
    pb = ShardedProblem(make_model(key, n_dae), X, X)
    points = {"init": pb.model.params}
    tr = Trainer(ShardedProblem(make_model(key, n_dae), X, X), "newton-cg",
                 newton={"cg_max_it": 50})
    try:
        run(tr, max_steps=8, printer=None)
        points["8 Newton-CG steps"] = tr.theta
    finally:
        tr.destroy()
    for pname, theta in points.items():
        d_mean = float(np.mean(pb.gauss_newton(theta).diagonal()))
        for rel in lam_rel:
            lam = rel * d_mean
            row = {"net": key, "point": pname, "lambda": lam, "lambda_rel": rel,
                   "forcing": forcing}
            for pc in PCS:
                kw = dict(newton_kw, **(ACCURATE if pc == "hss*" else {}))
                nk = NewtonKrylov(pb, precond=pc.rstrip("*"), lam=lam, forcing=forcing,
                                  cg_max_it=2000, prefix=f"sys_{key}_{pc.rstrip('*')}"
                                  f"{'acc' if pc.endswith('*') else ''}_{len(rows)}_",
                                  **options_for(kw, pc.rstrip("*")))
                try:
                    t = time.perf_counter()
                    _, rec = nk.step(theta)
                    row[f"cg_{pc}"] = rec["cg_iterations"]
                    row[f"setup_s_{pc}"] = rec["time_compress"] + rec["time_factor"]
                    row[f"cg_s_{pc}"] = rec["time_cg"]
                    row[f"step_s_{pc}"] = time.perf_counter() - t
                finally:
                    nk.destroy()
            rows.append(row)
            print(f"  {pname:<18} lambda {rel:g} x mean diag: CG its " + "  ".join(
                f"{pc} {row[f'cg_{pc}']}" for pc in PCS) + f"  (HSS set-up "
                f"{row['setup_s_hss']:.2f} s, CG {row['cg_s_hss']:.2f} s; hss* set-up "
                f"{row['setup_s_hss*']:.2f} s, CG {row['cg_s_hss*']:.2f} s; none CG "
                f"{row['cg_s_none']:.2f} s)", flush=True)
    return rows


def systems_along_run(key, X, n_dae, newton_kw, newton_batch, steps, every,
                      pcs=("none", "kfac", "hss"), rtol=None):
    """The systems newton-hss actually solves, each solved again by every
    preconditioner. A newton-hss run (the command's options) takes ``steps``
    steps; at every ``every``-th one its parameters, damping lambda, forcing term and
    step number are kept (the step number fixes the gradient mini-batch, the CG
    sub-batch and the curvature mini-batch). Each kept system (H_cg + lambda I) p =
    -g is then solved from zero by CG to the relative residual ``rtol`` (None: the
    run's forcing term; cap 1000) with no preconditioner, KFAC and a freshly built
    H~ (the run's own settings), so the counts differ only by the preconditioner.
    With Martens' stop the run's forcing term did not end its CG (and a warm start
    meets it at once), so the command passes a fixed ``rtol``. The run's own count
    (warm start, the H~ it kept, cap 50) is reported beside them."""
    tr = Trainer(ShardedProblem(make_model(key, n_dae), X, X), "newton-hss",
                 batch_size=newton_batch, newton=dict(newton_kw, cg_max_it=50),
                 eval_every=1e9)
    kept = []
    try:
        for k in range(steps):
            theta, lam, it = tr.theta.copy(), tr.nk.lam, tr.nk.it
            rec = tr.step()
            if k % every == 0:
                kept.append({"step": k, "theta": theta, "lambda": lam, "it": it,
                             "forcing": rec["forcing"], "run_cg": rec["cg_iterations"],
                             "run_action": rec.get("hss_action")})
    finally:
        tr.destroy()
    kw = {k: v for k, v in newton_kw.items() if k not in ("cg_warm_start", "cg_backtrack", "cg_stop")}
    pb = ShardedProblem(make_model(key, n_dae), X, X)
    rows = []
    for pt in kept:
        row = {"net": key, **{k: v for k, v in pt.items() if k != "theta"},
               "rtol": pt["forcing"] if rtol is None else rtol}
        for pc in pcs:
            nk = NewtonKrylov(pb, precond=pc, lam=pt["lambda"], forcing=row["rtol"],
                              cg_max_it=1000, batch_size=newton_batch,
                              prefix=f"along_{key}_{pc}_{len(rows)}_",
                              **options_for(kw, pc))
            nk.it = pt["it"]                    # the same batches as the run's step
            try:
                _, rec = nk.step(pt["theta"])
                row[f"cg_{pc}"] = rec["cg_iterations"]
                row[f"setup_s_{pc}"] = rec["time_compress"] + rec["time_factor"]
                row[f"cg_s_{pc}"] = rec["time_cg"]
            finally:
                nk.destroy()
        rows.append(row)
        print(f"  step {pt['step']:>3} lambda {pt['lambda']:.2e} forcing {pt['forcing']:.2e}"
              f" rtol {row['rtol']:.0e}"
              f": CG its " + "  ".join(f"{pc} {row[f'cg_{pc}']} ({row[f'cg_s_{pc}']:.1f} s)"
                                       for pc in pcs)
              + f"; HSS set-up {row['setup_s_hss']:.1f} s, KFAC set-up "
              f"{row.get('setup_s_kfac', 0.0):.1f} s; the run: {pt['run_cg']} its "
              f"({pt['run_action']} H~)", flush=True)
    return rows


def race(key, X, Xv, n_dae, budget, newton_kw, methods, batch_size=None,
         newton_batch=None, eval_every=0.0):
    """Every method for ``budget`` seconds of optimizer time, one after another.
    Returns the records, the learning rates and trials of the first-order methods,
    and the peak resident memory (GB) of each run."""
    recs_all, lrs, peaks = [], {}, {}
    for m in methods:
        lr, bs = 1e-2, (newton_batch if m.startswith("newton") else batch_size)
        if m in GRIDS:
            lr, trials = choose_learning_rate(
                lambda r: Trainer(ShardedProblem(make_model(key, n_dae), X, X), m,
                                  lr=r, batch_size=bs, eval_every=1e9),
                GRIDS[m], time_budget=budget / 10)
            lrs[m] = (lr, trials)
            print(f"  {m:<11} learning rate {lr:g} from trials of {budget / 10:.0f} s: "
                  + ", ".join(f"{r:g} -> {v:.4g}" for r, v in trials), flush=True)
        tr = Trainer(ShardedProblem(make_model(key, n_dae), X, X), m, lr=lr,
                     batch_size=bs, newton=dict(newton_kw, cg_max_it=50),
                     validation=(Xv, Xv), eval_every=eval_every if bs else 0.0)
        reset_peak_memory()
        try:
            recs = run(tr, time_budget=budget, printer=None)
        except FloatingPointError as exc:
            print(f"  {m}: {exc}")
            recs = tr.records
        finally:
            tr.destroy()
        peaks[m] = peak_memory_gb()
        recs_all += recs
        print(f"  {m:<11} final loss {recs[-1]['loss']:.5f} after {recs[-1]['iteration']} "
              f"steps, {recs[-1]['time']:.1f} s, peak memory {peaks[m] or 0:.2f} GB",
              flush=True)
    return recs_all, lrs, peaks


def summarize(key, recs_all, budget, lrs, peaks, widths, n):
    by = {m: [r for r in recs_all if r["optimizer"] == m] for m in
          dict.fromkeys(r["optimizer"] for r in recs_all)}
    final = {m: rs[-1]["loss"] for m, rs in by.items()}
    rows = []
    for m, rs in by.items():
        steps = [r for r in rs if not r.get("final")]
        split = {k: float(sum(r.get(k) or 0.0 for r in steps)) for k in TIME_SPLIT}
        row = {"net": key, "widths": widths, "samples": n, "budget_s": budget, "method": m,
               "steps": len(steps), "final_loss": final[m],
               "val_loss": rs[-1].get("val_loss"), "data_passes": rs[-1]["data_passes"],
               "time": rs[-1]["time"],
               "mean_cg": float(np.mean([r["cg_iterations"] for r in steps]))
               if m.startswith("newton") and steps else 0.0, **split,
               "lr": lrs[m][0] if m in lrs else None,
               "lr_trials": lrs[m][1] if m in lrs else None,
               "peak_memory_gb": peaks.get(m),
               # Martens' figure: squared error per image, summed over the pixels
               "train_error": 2 * final[m],
               "val_error": None if rs[-1].get("val_loss") is None
               else 2 * rs[-1]["val_loss"]}
        for ref in ("adam", "newton-cg"):
            if ref in final:
                row[f"time_to_{ref}_loss"], row[f"passes_to_{ref}_loss"] = first_reach(
                    rs, final[ref])
        rows.append(row)
    print(f"\nnet ({key}) {'-'.join(map(str, widths))}, {n} images, {budget:.0f} s per "
          f"method, one process")
    print(f"{'method':<11} {'steps':>5} {'final loss':>10} {'val loss':>9} {'passes':>8} "
          f"{'CG its':>6}  split s: grad/compress/refresh/factor/CG/other   "
          f"{'to Adam s / passes':>19} {'to CG s':>8} {'peak GB':>7}")
    for r in rows:
        to_a = ("-" if r.get("time_to_adam_loss") is None else
                f"{r['time_to_adam_loss']:.1f} / {r['passes_to_adam_loss']:.0f}")
        to_c = "-" if r.get("time_to_newton-cg_loss") is None else \
            f"{r['time_to_newton-cg_loss']:.1f}"
        split = "/".join(f"{r[k]:.1f}" for k in TIME_SPLIT)
        print(f"{r['method']:<11} {r['steps']:>5} {r['final_loss']:>10.5f} "
              f"{(r['val_loss'] or float('nan')):>9.5f} {r['data_passes']:>8.1f} "
              f"{r['mean_cg']:>6.1f}  {split:<44} {to_a:>19} {to_c:>8} "
              f"{r['peak_memory_gb'] or float('nan'):>7.2f}")
    return rows


def targets(rows, sys_rows, along_rows=()):
    """The training issue's targets, met or missed by how much."""
    out = []
    by = {(r["net"], r["method"]): r for r in rows}
    for key in dict.fromkeys(r["net"] for r in rows):
        hss, adam, cg = by.get((key, "newton-hss")), by.get((key, "adam")), \
            by.get((key, "newton-cg"))
        if not hss:
            continue
        best = min((r for r in rows if r["net"] == key), key=lambda r: r["final_loss"])
        out.append((key, "newton-hss ends with the lowest loss", best["method"] == "newton-hss",
                    f"lowest: {best['method']} {best['final_loss']:.5f}; newton-hss "
                    f"{hss['final_loss']:.5f}"))
        if cg:
            t = hss.get("time_to_newton-cg_loss")
            out.append((key, "reaches newton-cg's final loss in <= 60 % of its time",
                        t is not None and t <= 0.6 * cg["time"],
                        f"{'never' if t is None else f'{t:.1f} s'} vs 0.6 x {cg['time']:.1f} s"))
        if adam:
            t, p = hss.get("time_to_adam_loss"), hss.get("passes_to_adam_loss")
            out.append((key, "reaches Adam's final loss in <= 1/3 of its time",
                        t is not None and t <= adam["time"] / 3,
                        f"{'never' if t is None else f'{t:.1f} s'} vs {adam['time'] / 3:.1f} s"))
            out.append((key, "... and in <= 1/10 of its data passes",
                        p is not None and p <= adam["data_passes"] / 10,
                        f"{'never' if p is None else f'{p:.0f}'} vs "
                        f"{adam['data_passes'] / 10:.0f}"))
        newton = [r for r in rows if r["net"] == key and r["method"].startswith("newton")]
        best_nt = min(newton, key=lambda r: r["final_loss"])
        out.append((key, "newton-hss is the best Newton method",
                    best_nt["method"] == "newton-hss",
                    f"best: {best_nt['method']} {best_nt['final_loss']:.5f}; newton-hss "
                    f"{hss['final_loss']:.5f}"))
        if adam:
            t = best_nt.get("time_to_adam_loss")
            out.append((key, "the best Newton method reaches Adam's final loss in <= 1/2 "
                        "of Adam's time", t is not None and t <= adam["time"] / 2,
                        f"{best_nt['method']} {'never' if t is None else f'{t:.1f} s'} vs "
                        f"{adam['time'] / 2:.1f} s (Adam {adam['final_loss']:.5f}, "
                        f"{best_nt['method']} {best_nt['final_loss']:.5f})"))
        setup = hss["time_compress"] + hss["time_refresh"] + hss["time_factor"]
        out.append((key, "PC set-up and refreshes <= 25 % of newton-hss's time",
                    setup <= 0.25 * hss["time"],
                    f"{100 * setup / max(hss['time'], 1e-9):.0f} %"))
    for r in along_rows:
        for other, frac in (("none", 3), ("kfac", 2)):
            ok = r["cg_hss"] * frac <= r[f"cg_{other}"]
            out.append((r["net"], f"same system: CG its HSS <= 1/{frac} of {other} "
                        f"(newton-hss step {r['step']})", ok,
                        f"{r['cg_hss']} vs {r[f'cg_{other}']}"))
    for r in sys_rows:
        for other, frac in (("none", 5), ("hf", 2), ("kfac", 2)):
            ok = r["cg_hss"] * frac <= r[f"cg_{other}"]
            out.append((r["net"], f"CG its HSS <= 1/{frac} of {other} ({r['point']}, "
                        f"lambda {r['lambda_rel']:g} mean diag)", ok,
                        f"{r['cg_hss']} vs {r[f'cg_{other}']}"))
    print("\ntargets (issue: second-order training that pays for itself)")
    for key, what, ok, fig in out:
        print(f"  ({key}) {'met   ' if ok else 'MISSED'} {what}: {fig}")
    return [{"net": k, "target": w, "met": bool(o), "figure": f} for k, w, o, f in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=30.0,
                    help="optimizer seconds per method")
    ap.add_argument("--nets", default="c", help="c, dae or both (comma-separated)")
    ap.add_argument("--dae-n", type=int, default=60000,
                    help="training images for the deep autoencoder")
    ap.add_argument("--curvature-samples", default="auto")
    ap.add_argument("--hss-samples", default="auto",
                    help="products for newton-hss's H~ (default: the memory plan)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="first-order mini-batch (default: full batch)")
    ap.add_argument("--newton-batch", type=int, default=None,
                    help="Newton methods: gradient mini-batch (default: full batch)")
    ap.add_argument("--cg-batch", type=int, default=None,
                    help="Newton methods: CG products on this many of the mini-batch")
    ap.add_argument("--cg-warm-start", type=float, default=0.0)
    ap.add_argument("--cg-backtrack", action="store_true")
    ap.add_argument("--cg-stop", choices=("forcing", "martens"), default="forcing")
    ap.add_argument("--eval-every", type=float, default=None,
                    help="with mini-batches: seconds of optimizer time between two "
                         "evaluations of the full losses (default budget / 20)")
    ap.add_argument("--no-system", action="store_true", help="skip part 1")
    ap.add_argument("--systems-along", default=None, metavar="STEPS:EVERY",
                    help="part 1b: the systems of a newton-hss run of STEPS steps, every "
                         "EVERY-th solved again with none, KFAC and a fresh H~")
    ap.add_argument("--systems-rtol", type=float, default=None,
                    help="relative residual of the --systems-along solves (default: "
                         "the run's forcing term; 1e-2 with --cg-stop martens)")
    ap.add_argument("--hss-shift-aware", type=float, default=None, metavar="C",
                    help="newton-hss: H~ accurate to C x lambda (see the trainer)")
    ap.add_argument("--hss-projections", type=int, default=None, metavar="R",
                    help="newton-hss: H~ from the CG batch, R projections per sample")
    ap.add_argument("--no-race", action="store_true", help="skip part 2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=os.path.join(HERE, "bench_train.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)

    def auto_or_int(v):
        return v if v == "auto" else int(v)
    newton_kw = {"curvature_samples": auto_or_int(args.curvature_samples),
                 "hss_samples": auto_or_int(args.hss_samples),
                 "cg_batch": args.cg_batch, "cg_warm_start": args.cg_warm_start,
                 "cg_backtrack": args.cg_backtrack, "cg_stop": args.cg_stop,
                 "hss_shift_aware": args.hss_shift_aware,
                 "hss_projections": args.hss_projections}
    eval_every = args.budget / 20 if args.eval_every is None else args.eval_every
    rows, sys_rows, along_rows, levels = [], [], [], {}
    for key in args.nets.split(","):
        widths, _, _, n = net(key, args.dae_n)
        X, Xv = net_data(key, n)
        model = make_model(key, args.dae_n)
        print(f"net ({key}): {'-'.join(map(str, widths))}, {model.n_params} weights "
              f"(a dense Gauss-Newton matrix: {8 * model.n_params ** 2 / 1e12:.3g} TB), "
              f"{n} images (+{Xv.shape[0]} held out)", flush=True)
        if not args.no_system:
            print("part 1: one system, forcing term 1e-2")
            sys_rows += same_system_rows(key, X, args.dae_n, newton_kw)
        if args.systems_along:
            steps, every = (int(v) for v in args.systems_along.split(":"))
            print(f"part 1b: the systems of {steps} newton-hss steps, every {every}-th "
                  f"solved again by each preconditioner")
            rtol = args.systems_rtol
            if rtol is None and args.cg_stop == "martens":
                rtol = 1e-2          # the run's forcing term did not stop its CG
            along_rows += systems_along_run(key, X, args.dae_n, newton_kw,
                                            args.newton_batch, steps, every, rtol=rtol)
        if args.no_race:
            continue
        print(f"part 2: {args.budget:.0f} s per method")
        recs_all, lrs, peaks = race(key, X, Xv, args.dae_n, args.budget, newton_kw,
                                    args.methods.split(","), args.batch_size,
                                    args.newton_batch, eval_every)
        rows += summarize(key, recs_all, args.budget, lrs, peaks, widths, n)
        reach = first_to_reach(recs_all)      # time to loss levels
        print(reach)
        rows[-1]["first_to_reach"] = reach
        levels[key] = level_table(recs_all)
        plot_histories(recs_all, os.path.join(HERE, f"train_{key}.png"),
                       f"fashion-mnist: net {'-'.join(map(str, widths))}, {n} images, "
                       f"{args.budget:.0f} s each")
    tg = targets(rows, sys_rows, along_rows)
    write_results(args.out, rows, same_system=sys_rows, systems_along=along_rows,
                  targets=tg, error_levels=levels)


if __name__ == "__main__":
    main()
