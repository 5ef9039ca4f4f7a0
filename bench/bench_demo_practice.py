"""Which Hessian-free practice the demo should run (not a test).

    .venv/bin/python bench/bench_demo_practice.py [--variants baseline,backtrack,...]

Runs ``make demo``'s command (784-32-784 tanh autoencoder, 2000 Fashion-MNIST
images, mpiexec -n 2 x 1 thread, six methods, 30 s each) once per variant of the
Hessian-free options and tabulates the final training loss of every method,
newton-hss's rank among them, and its mean CG iterations. One run per variant:
the spread between runs of one variant is about +-0.1 in Adam's loss (timing
noise on a shared 2-core machine), so read differences below that as ties.
``--reuse DIR`` tabulates logs an earlier run left in DIR (demo_<variant>.json)
instead of training. Writes JSON (``--out``).
"""
import argparse
import json
import os
import subprocess
import sys

from _results import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METHODS = ("newton-hss", "newton-cg", "newton-hf", "newton-kfac", "lbfgs", "adam")
VARIANTS = {
    "baseline": [],
    "backtrack": ["--cg-backtrack"],
    "warm": ["--cg-warm-start", "0.95"],
    "warm+backtrack": ["--cg-warm-start", "0.95", "--cg-backtrack"],
    "warm+backtrack+cg-batch 500": ["--cg-warm-start", "0.95", "--cg-backtrack",
                                    "--cg-batch", "500"],
    "warm+martens": ["--cg-warm-start", "0.95", "--cg-stop", "martens"],
    "warm+martens+backtrack": ["--cg-warm-start", "0.95", "--cg-stop", "martens",
                               "--cg-backtrack"],
}
DEMO = ["-m", "hsspetsc", "train", "--data", "fashion-mnist", "--n", "2000",
        "--layers", "784,32,784", "--activation", "tanh", "--compare", ",".join(METHODS),
        "--time-budget", "30", "--lr-grid", "1e-3,3e-3,1e-2,3e-2",
        "--curvature-samples", "128"]


def log_name(variant):
    return "demo_" + variant.replace("+", "-").replace(" ", "") + ".json"


def run_variant(variant, folder):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_hwloc_base_binding_policy="none")
    log = os.path.join(folder, log_name(variant))
    cmd = ["mpiexec", "--oversubscribe", "-n", "2", sys.executable] + DEMO + \
        VARIANTS[variant] + ["--log", log]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return log


def summarize(variant, records):
    final = {r["optimizer"]: r["loss"] for r in records if r.get("final")}
    hss = [r for r in records if r["optimizer"] == "newton-hss" and not r.get("final")]
    order = sorted(final, key=final.get)
    return {"variant": variant, "flags": " ".join(VARIANTS[variant]), "final": final,
            "best": order[0], "hss_rank": order.index("newton-hss") + 1,
            "hss_steps": len(hss),
            "hss_mean_cg": sum(r["cg_iterations"] for r in hss) / max(len(hss), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--reuse", default=None, metavar="DIR",
                    help="tabulate the logs in DIR instead of training")
    ap.add_argument("--logs", default=os.path.join(HERE, "demo_practice_logs"))
    ap.add_argument("--out", default=os.path.join(HERE, "bench_demo_practice.json"))
    args = ap.parse_args()
    rows = []
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}: {', '.join(VARIANTS)}")
        if args.reuse:
            log = os.path.join(args.reuse, log_name(v))
        else:
            os.makedirs(args.logs, exist_ok=True)
            log = run_variant(v, args.logs)
        with open(log) as f:
            rows.append(summarize(v, json.load(f)))
    print(f"{'variant':<30} " + " ".join(f"{m:>11}" for m in METHODS) +
          "  best         hss rank  hss CG its")
    for r in rows:
        print(f"{r['variant']:<30} " + " ".join(
            f"{r['final'].get(m, float('nan')):>11.4f}" for m in METHODS) +
            f"  {r['best']:<12} {r['hss_rank']:>8}  {r['hss_mean_cg']:>10.1f}")
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
