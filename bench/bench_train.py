"""Training benchmark (not a test): newton-hss, newton-cg and adam on autoencoders.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py [--budget 20]

For each net: the same optimizer-time budget for every method; final loss, data
passes, time, mean CG iterations per Newton step, the time split of a Newton step
(gradient, compression, factorization, CG) and the data passes each method needed
to reach Adam's final loss. Writes JSON and a plot per net next to this file.
"""
import argparse
import os
import sys
import time

import petsc4py

petsc4py.init([sys.argv[0]])
import numpy as np  # noqa: E402

from hsspetsc.cli import plot_histories  # noqa: E402
from hsspetsc.mlp import MLP, load  # noqa: E402
from hsspetsc.training import ShardedProblem, Trainer, run  # noqa: E402
from _results import write_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NETS = {"a": ("digits", 500, [64, 32, 64]), "b": ("digits", 1797, [64, 128, 64]),
        "c": ("fashion-mnist", 2000, [784, 32, 784]),
        "clf": ("fashion-mnist", 2000, [784, 64, 10])}     # classifier (cross-entropy)
METHODS = ("newton-hss", "newton-cg", "adam", "momentum")


def _data(key):
    data, n, widths = NETS[key]
    X, y = load(data, n)
    if key == "clf":
        Xt, yt = load(data, 1000, split="test")
        return X, y, "cross_entropy", (Xt, yt)
    return X, X, "mse", None


def _accuracy(widths, theta, test):
    model = MLP(widths, activation="tanh", loss="cross_entropy")
    model.params = theta
    return float(np.mean(np.argmax(model.forward(test[0]), axis=1) == test[1]))


def _best_momentum_lr(widths, X, Y, loss, trial_s=3.0):
    """Best-tuned SGD-family baseline: momentum, lr picked by a short trial."""
    best = None
    for lr in (3e-3, 1e-2, 3e-2, 1e-1):
        model = MLP(widths, activation="tanh", loss=loss, seed=0)
        tr = Trainer(ShardedProblem(model, X, Y), "momentum", lr=lr)
        try:
            recs = run(tr, time_budget=trial_s, printer=None)
        except FloatingPointError:          # this lr diverges
            continue
        if best is None or recs[-1]["loss"] < best[1]:
            best = (lr, recs[-1]["loss"])
    return best[0]


def passes_to_reach(recs, target):
    for r in recs:
        if r["loss"] <= target:
            return r["data_passes"], r["time"]
    return None, None


def cg_ratio_rows(key, X, widths, lams=(1e-1, 1e-3), forcing=1e-4):
    """CG iterations for the same system (H + lambda I) p = -g, same forcing term,
    without and with the HSS preconditioner, at the initial and at a trained point."""
    from hsspetsc.mlp.optimizers import Adam
    from hsspetsc.training.newton import NewtonKrylov
    rows = []
    model = MLP(widths, activation="tanh", seed=0)
    points = {"init": model.params}
    opt = Adam(1e-2)
    th = model.params
    for _ in range(200):
        _, g = model.loss_grad(X, X, th)
        th = opt.step(th, g)
    points["adam200"] = th
    for pname, theta in points.items():
        for lam in lams:
            its = {}
            for pre in ("none", "hss"):
                pb = ShardedProblem(MLP(widths, activation="tanh", seed=0), X, X)
                nk = NewtonKrylov(pb, precond=pre, lam=lam, forcing=forcing, cg_max_it=5000,
                                  prefix=f"r{key}{pname}{lam:g}{pre}_", curvature_samples=256,
                                  compress_params={"tol": 1e-4, "max_rank": 256,
                                                   "neighbors": 16})
                try:
                    t = time.perf_counter()
                    _, rec = nk.step(theta)
                    its[pre] = (rec["cg_iterations"], time.perf_counter() - t,
                                rec["time_compress"])
                finally:
                    nk.destroy()
            rows.append({"net": key, "point": pname, "lambda": lam, "forcing": forcing,
                         "cg_none": its["none"][0], "cg_hss": its["hss"][0],
                         "ratio": its["none"][0] / max(its["hss"][0], 1),
                         "step_s_none": its["none"][1], "step_s_hss": its["hss"][1],
                         "compress_s": its["hss"][2]})
            r = rows[-1]
            print(f"  CG at {pname:<8} lambda {lam:<6g}: none {r['cg_none']:>5}  hss "
                  f"{r['cg_hss']:>5}  ratio {r['ratio']:.1f}  (compress {r['compress_s']:.1f} s)",
                  flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--nets", default="a,b,c,clf")
    ap.add_argument("--out", default=os.path.join(HERE, "bench_train.json"))
    ap.add_argument("--ratio-nets", default="a")
    args = ap.parse_args()
    rows = []
    ratio_rows = []
    for key in args.ratio_nets.split(","):
        data, n, widths = NETS[key]
        X, _ = load(data, n)
        print(f"net ({key}): CG iterations, same system and forcing term")
        ratio_rows += cg_ratio_rows(key, X, widths)
    for key in args.nets.split(","):
        data, n, widths = NETS[key]
        X, Y, loss, test = _data(key)
        recs_all = []
        mom_lr = _best_momentum_lr(widths, X, Y, loss)
        acc = {}
        for opt in METHODS:
            model = MLP(widths, activation="tanh", loss=loss, seed=0)
            tr = Trainer(ShardedProblem(model, X, Y), opt,
                         lr=mom_lr if opt == "momentum" else 1e-2,
                         newton={"curvature_samples": 128, "rebuild": 20, "cg_max_it": 50})
            try:
                recs = run(tr, time_budget=args.budget, printer=None)
            finally:
                tr.destroy()
            recs_all += recs
            if test is not None:
                acc[opt] = _accuracy(widths, tr.theta, test)
        plot_histories(recs_all, os.path.join(HERE, f"train_{key}.png"),
                       f"{data}: net {widths}, {n} samples")
        adam_final = [r for r in recs_all if r["optimizer"] == "adam"][-1]["loss"]
        print(f"net ({key}) {widths} on {n} {data}; budget {args.budget:.0f} s per method")
        print(f"{'method':<11} {'steps':>6} {'final loss':>11} {'passes':>8} {'mean CG':>8} "
              f"{'grad s':>7} {'compr s':>8} {'factor s':>9} {'CG s':>7} {'passes to Adam':>15}"
              f" {'test acc':>8}")
        for opt in METHODS:
            rs = [r for r in recs_all if r["optimizer"] == opt]
            steps = [r for r in rs if not r.get("final")]
            cg = np.mean([r["cg_iterations"] for r in steps]) if opt.startswith("newton") else 0.0
            split = {k: float(sum(r.get(k, 0.0) for r in steps))
                     for k in ("time_grad", "time_compress", "time_factor", "time_cg")}
            reach, reach_t = passes_to_reach(rs, adam_final)
            row = {"net": key, "widths": widths, "data": data, "samples": n,
                   "budget_s": args.budget, "method": opt, "steps": len(steps),
                   "final_loss": rs[-1]["loss"], "data_passes": rs[-1]["data_passes"],
                   "mean_cg": float(cg), **split, "passes_to_adam_loss": reach,
                   "time_to_adam_loss": reach_t, "lr": mom_lr if opt == "momentum" else None,
                   "test_accuracy": acc.get(opt)}
            rows.append(row)
            print(f"{opt:<11} {len(steps):>6} {rs[-1]['loss']:>11.5f} "
                  f"{rs[-1]['data_passes']:>8.1f} {cg:>8.1f} {split['time_grad']:>7.2f} "
                  f"{split['time_compress']:>8.2f} {split['time_factor']:>9.2f} "
                  f"{split['time_cg']:>7.2f} {('-' if reach is None else f'{reach:.1f}'):>15}"
                  f" {('-' if opt not in acc else f'{acc[opt]:.3f}'):>8}", flush=True)
    write_results(args.out, rows, cg_ratio=ratio_rows)


if __name__ == "__main__":
    main()
