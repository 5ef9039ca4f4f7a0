"""Training benchmark (not a test): does the HSS preconditioner pay for itself?

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py [--budget 30] [--nets c]
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py --nets dae --budget 150 \
        --no-system --curvature-samples 16 --hss-samples 64 --out bench/bench_train_dae.json

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
images); (dae) the deep autoencoder of Hinton & Salakhutdinov (2006), used by
Martens' Hessian-free and by K-FAC: 784-1000-500-250-30-250-500-1000-784, logistic
units, a linear 30-unit code, about 2.8 M weights, on ``--dae-n`` images.
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
from hsspetsc.training.newton import NewtonKrylov  # noqa: E402
from hsspetsc.training.run import TIME_SPLIT, choose_learning_rate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DAE = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
DAE_ACTS = ["sigmoid"] * 3 + ["identity"] + ["sigmoid"] * 3
METHODS = ("newton-hss", "newton-cg", "newton-hf", "newton-kfac", "lbfgs", "adam")
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
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


def make_model(key, n_dae, seed=0):
    widths, act, out, _ = net(key, n_dae)
    return MLP(widths, activation=act, output=out, loss="mse", seed=seed)


def first_reach(recs, target):
    for r in recs:
        if r["loss"] <= target:
            return r["time"], r["data_passes"]
    return None, None


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
                                  f"{'acc' if pc.endswith('*') else ''}_{len(rows)}_", **kw)
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


def race(key, X, Xv, n_dae, budget, newton_kw, methods):
    recs_all, lr_trials = [], None
    lr = None
    for m in methods:
        if m == "adam":
            lr, lr_trials = choose_learning_rate(
                lambda r: Trainer(ShardedProblem(make_model(key, n_dae), X, X), "adam",
                                  lr=r), LR_GRID, time_budget=budget / 10)
        tr = Trainer(ShardedProblem(make_model(key, n_dae), X, X), m, lr=lr or 1e-2,
                     newton=dict(newton_kw, cg_max_it=50), validation=(Xv, Xv))
        try:
            recs = run(tr, time_budget=budget, printer=None)
        except FloatingPointError as exc:
            print(f"  {m}: {exc}")
            recs = tr.records
        finally:
            tr.destroy()
        recs_all += recs
        print(f"  {m:<11} final loss {recs[-1]['loss']:.5f} after {recs[-1]['iteration']} "
              f"steps, {recs[-1]['time']:.1f} s", flush=True)
    return recs_all, lr, lr_trials


def summarize(key, recs_all, budget, lr, lr_trials, widths, n):
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
               "lr": lr if m == "adam" else None,
               "lr_trials": lr_trials if m == "adam" else None}
        for ref in ("adam", "newton-cg"):
            if ref in final:
                row[f"time_to_{ref}_loss"], row[f"passes_to_{ref}_loss"] = first_reach(
                    rs, final[ref])
        rows.append(row)
    print(f"\nnet ({key}) {'-'.join(map(str, widths))}, {n} images, {budget:.0f} s per "
          f"method, one process")
    print(f"{'method':<11} {'steps':>5} {'final loss':>10} {'val loss':>9} {'passes':>8} "
          f"{'CG its':>6}  split s: grad/compress/refresh/factor/CG/other   "
          f"{'to Adam s / passes':>19} {'to CG s':>8}")
    for r in rows:
        to_a = ("-" if r.get("time_to_adam_loss") is None else
                f"{r['time_to_adam_loss']:.1f} / {r['passes_to_adam_loss']:.0f}")
        to_c = "-" if r.get("time_to_newton-cg_loss") is None else \
            f"{r['time_to_newton-cg_loss']:.1f}"
        split = "/".join(f"{r[k]:.1f}" for k in TIME_SPLIT)
        print(f"{r['method']:<11} {r['steps']:>5} {r['final_loss']:>10.5f} "
              f"{(r['val_loss'] or float('nan')):>9.5f} {r['data_passes']:>8.1f} "
              f"{r['mean_cg']:>6.1f}  {split:<44} {to_a:>19} {to_c:>8}")
    return rows


def targets(rows, sys_rows):
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
        setup = hss["time_compress"] + hss["time_refresh"] + hss["time_factor"]
        out.append((key, "PC set-up and refreshes <= 25 % of newton-hss's time",
                    setup <= 0.25 * hss["time"],
                    f"{100 * setup / max(hss['time'], 1e-9):.0f} %"))
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
    ap.add_argument("--dae-n", type=int, default=2000, help="images for the deep autoencoder")
    ap.add_argument("--curvature-samples", type=int, default=128)
    ap.add_argument("--hss-samples", type=int, default=128,
                    help="products for newton-hss's H~ (memory: about 5 x N x this x 8 B)")
    ap.add_argument("--no-system", action="store_true", help="skip part 1")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=os.path.join(HERE, "bench_train.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    newton_kw = {"curvature_samples": args.curvature_samples,
                 "hss_samples": args.hss_samples}
    rows, sys_rows = [], []
    for key in args.nets.split(","):
        widths, _, _, n = net(key, args.dae_n)
        Xall, _ = load("fashion-mnist", n + n // 10)
        X, Xv = Xall[:n], Xall[n:]
        model = make_model(key, args.dae_n)
        print(f"net ({key}): {'-'.join(map(str, widths))}, {model.n_params} weights "
              f"(a dense Gauss-Newton matrix: {8 * model.n_params ** 2 / 1e12:.3g} TB), "
              f"{n} images (+{n // 10} held out)", flush=True)
        if not args.no_system:
            print("part 1: one system, forcing term 1e-2")
            sys_rows += same_system_rows(key, X, args.dae_n, newton_kw)
        print(f"part 2: {args.budget:.0f} s per method")
        recs_all, lr, lr_trials = race(key, X, Xv, args.dae_n, args.budget, newton_kw,
                                       args.methods.split(","))
        rows += summarize(key, recs_all, args.budget, lr, lr_trials, widths, n)
        levels = first_to_reach(recs_all)       # time to fixed loss levels
        print(levels)
        rows[-1]["first_to_reach"] = levels
        plot_histories(recs_all, os.path.join(HERE, f"train_{key}.png"),
                       f"fashion-mnist: net {'-'.join(map(str, widths))}, {n} images, "
                       f"{args.budget:.0f} s each")
    tg = targets(rows, sys_rows)
    write_results(args.out, rows, same_system=sys_rows, targets=tg)


if __name__ == "__main__":
    main()
