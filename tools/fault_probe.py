"""Try faults and bad inputs as a user or an operator would, and count the outcomes.

    .venv/bin/python tools/fault_probe.py [--out fault_probe.json] [--only WORD]

Every case is a real command (the CLI, an example, a python snippet), run serially
or under mpiexec with a timeout, and classified:

  clear     it stopped with a non-zero exit and a one-line error (no traceback);
            library calls and injected internal faults: an exception with a message
  warned    a misspelt option: exit 0 with a warning naming it
  ok        a case that must succeed (a resume, an interrupt) did, with its output
  traceback it stopped with an error, but as a Python traceback (a user error
            should read as a message)
  silent    bad input accepted: exit 0
  hang      still running at the timeout
  crash     killed by a signal, abort, segfault or a PETSc signal handler
  lost      an existing log changed, or a log that is not complete strict JSON

The target: 0 hang, 0 crash, 0 lost, 0 silent.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
FAULT = os.path.join(ROOT, "tests", "scripts", "fault_train.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
           OMPI_MCA_hwloc_base_binding_policy="none")
TIMEOUT = 60
SMALL = "--data digits --n 300 --layers 64,8,64 --steps 3"
OLD_LOG = b'[{"optimizer": "adam", "iteration": 0, "loss": 1.5}]\n'


def mpi(n, cmd):
    return f"mpiexec --oversubscribe -n {n} {cmd}" if n else cmd


def train(args, n=0):
    return mpi(n, f"{PY} -m hsspetsc train {args}")


def cases(tmp):
    """(name, command, kind, log) with kind 'error' (must fail clearly) or 'ok'
    (must succeed); log: a log path that holds OLD_LOG before the run and must
    hold it after (None: no check)."""
    out = []
    add = out.append
    log = os.path.join(tmp, "log.json")
    # numbers of the training command
    for opt, vals in [("--n", ["0", "-5", "x"]), ("--steps", ["0", "-3"]),
                      ("--time-budget", ["0", "-1", "nan"]), ("--lr", ["0", "-1e-2", "inf"]),
                      ("--batch-size", ["0", "-2"]), ("--lam", ["-1", "nan", "0"]),
                      ("--rebuild", ["0", "-1"]), ("--cg-max-it", ["0"]),
                      ("--curvature-samples", ["0"]), ("--hss-samples", ["-1"]),
                      ("--seed", ["-1"])]:
        for v in vals:
            add((f"train {opt} {v}", train(f"{SMALL} {opt} {v}"), "error", None))
    for opt, v in [("-pc_hss_tol", "-1"), ("-pc_hss_tol", "2"), ("-pc_hss_validate", "-3"),
                   ("-pc_hss_leaf_size", "1"), ("-pc_hss_shift", "nan"),
                   ("-pc_hss_max_rank", "0"), ("-pc_hss_tolerance 1e-3 -pc_hss_strict", "")]:
        add((f"train {opt} {v}", train(f"{SMALL} {opt} {v}"), "error", None))
    add(("train -pc_hss_tolerance 1e-3 (misspelt: a warning)",
         train(f"{SMALL} -pc_hss_tolerance 1e-3"), "warn", None))
    add(("train --layers 64,8,63", train("--data digits --layers 64,8,63"), "error", None))
    add(("train --layers abc", train("--data digits --layers abc"), "error", None))
    add(("train --optimizer bfgs", train(f"{SMALL} --optimizer bfgs"), "error", None))
    add(("train --data nope", train(f"{SMALL} --data nope"), "error", None))
    add(("train --pc-layout diagonal", train(f"{SMALL} --pc-layout diagonal"), "error", None))
    add(("train --pc-layout distributed --hss-samples 0, 2 ranks",
         train(f"{SMALL} --optimizer newton-hss --pc-layout distributed --hss-samples 0",
               2), "error", None))
    add(("train --n above the data set", train("--data digits --n 100000 --layers 64,8,64"
                                                " --steps 1"), "error", None))
    # output paths, serial and 2 ranks
    for n in (0, 2):
        for opt in ("--log", "--checkpoint", "--plot"):
            add((f"{opt} in a missing folder, {n or 1} rank(s)",
                 train(f"{SMALL} {opt} /nonexistent-hsspetsc/x", n), "error", None))
        add((f"--log is a folder, {n or 1} rank(s)", train(f"{SMALL} --log {tmp}", n),
             "error", None))
    # one rank fails (the last), 1, 2 and 3 ranks
    for n in (0, 2, 3):
        for fault in ("gn-entries", "gn-product", "loss", "exit-step"):
            if n == 0 and fault == "exit-step":
                continue
            # serially the injected exception itself is the error (a traceback)
            add((f"{fault} fails on the last of {n or 1} rank(s)",
                 mpi(n, f"{PY} {FAULT} {fault} train {SMALL} --log {log}"),
                 "raise" if n == 0 else "error", None))
    # ranks started with different arguments (MPMD)
    base = f"{PY} -m hsspetsc train --data digits --steps 2"
    for what, a, b in [("layers", "--layers 64,16,64", "--layers 64,12,64"),
                       ("seed", "--seed 0", "--seed 1"), ("n", "--n 300", "--n 301"),
                       ("optimizer", "--optimizer adam", "--optimizer sgd"),
                       ("lam", "--lam 1", "--lam 2"),
                       ("PETSc option", "", "-ksp_rtol 1e-3"),
                       ("loss", "--loss mse", "--loss cross_entropy")]:
        lay = "" if what == "layers" else ("--layers 64,8,64" if what != "loss" else "")
        add((f"ranks differ in {what}",
             f"mpiexec --oversubscribe -n 1 {base} {lay} {a} : -n 1 {base} {lay} {b}",
             "error", None))
    # failing runs must leave an existing log byte for byte
    for n in (0, 2):
        for bad in ("-pc_hss_tol -1", "--lam nan", "--resume /nonexistent.npz",
                    "--optimizer nope", "--n 0"):
            add((f"failing run ({bad}) keeps the log, {n or 1} rank(s)",
                 train(f"{SMALL} --log {log} {bad}", n), "error", log))
        add((f"fault in the first step keeps the log, {n or 1} rank(s)",
             mpi(n, f"{PY} {FAULT} gn-entries train {SMALL} --log {log}"),
             "raise" if n == 0 else "error", log))
    # checkpoints that cannot be read
    ck = os.path.join(tmp, "ck")
    for kind in ("empty", "garbage", "truncated-zip", "no-format", "future", "other-net",
                 "other-optimizer", "nan-theta", "folder"):
        add((f"--resume from a checkpoint: {kind}", train(f"{SMALL} --resume {ck}-{kind}"),
            "error", None))
    add(("--resume from a corrupt checkpoint, 2 ranks",
         train(f"{SMALL} --resume {ck}-garbage", 2), "error", None))
    # the compress command
    npy = os.path.join(tmp, "m")
    add(("compress a small matrix (--n 100, below the default leaf size)",
         f"{PY} -m hsspetsc compress --matrix K02 --n 100", "ok", None))
    for args in ("--matrix K99", "--matrix K02 --n 1024 --tol 0",
                 "--matrix K02 --n 1024 --tol 2", "--npy /nonexistent.npy",
                 f"--npy {npy}-nonsym.npy", f"--npy {npy}-nan.npy", f"--npy {npy}-rect.npy",
                 f"--npy {npy}-text.npy", "--matrix K02 --n 1024 --leaf-size 0",
                 "--matrix K02 --n 1024 --max-rank 0",
                 "--matrix K02 --n 1024 --out /nonexistent-hsspetsc/h.npz",
                 "--matrix K02 --n 1024 --plot /nonexistent-hsspetsc/h.png",
                 f"--points {npy}-rect.npy --kernel foo", "--matrix K02 --n 1000", ""):
        add((f"compress {args or '(no source)'}", f"{PY} -m hsspetsc compress {args}",
             "error", None))
    # the library
    snippets = {
        "solve with a 1e308 right-hand side":
            "H = hp.compress(hp.gallery.testsuite('K02', 1024), tol=1e-6); "
            "F = H.factorize(1e-3); F.solve(np.full(1024, 1e308))",
        "matvec with 1e308":
            "H = hp.compress(hp.gallery.testsuite('K02', 1024), tol=1e-6); "
            "H @ np.full(1024, 1e308)",
        "matvec with NaN":
            "H = hp.compress(hp.gallery.testsuite('K02', 1024), tol=1e-6); "
            "H @ np.full(1024, np.nan)",
        "matvec of the wrong length":
            "H = hp.compress(hp.gallery.testsuite('K02', 1024), tol=1e-6); H @ np.ones(5)",
        "compress a matrix with NaN": "A = np.eye(64); A[1, 1] = np.nan; hp.compress(A)",
        "compress a non-symmetric matrix": "hp.compress(np.random.rand(64, 64))",
        "factorize with a negative shift":
            "H = hp.compress(hp.gallery.testsuite('K02', 1024), tol=1e-6); H.factorize(-1.0)",
        "factorize an indefinite matrix":
            "A = np.diag(np.r_[np.ones(60), -np.ones(4)]); "
            "hp.compress(A, leaf_size=16, spd=False).factorize(0.0)",
        "load a missing file": "hp.load('/nonexistent.npz')",
        "load a corrupt file": f"open('{tmp}/c.npz', 'wb').write(b'PK junk'); "
                               f"hp.load('{tmp}/c.npz')",
        "save into a missing folder":
            "H = hp.compress(hp.gallery.testsuite('K02', 1024), tol=1e-6); "
            "H.save('/nonexistent-hsspetsc/h.npz')",
        "compress with an impossible tol": "hp.compress(np.eye(64), tol=-1)",
        "compress with leaf_size larger than N": "hp.compress(np.eye(64), leaf_size=65)",
        "threads = 0": "hp.compress(np.eye(64), n_threads=0)",
    }
    for name, code in snippets.items():
        add((f"library: {name}", f"{PY} -c \"import numpy as np, hsspetsc as hp; "
             f"{code}; print('returned')\"", "raise", None))
    # PETSc examples
    ex = os.path.join(ROOT, "examples", "kernel_pcg.py")
    cache = os.path.join(tmp, "cold-cache")
    for i in range(3):
        add((f"cold test-suite cache under mpiexec -n 2 (run {i + 1})",
             f"rm -rf {cache} && HSSPETSC_CACHE={cache} " +
             mpi(2, f"{PY} {ex} -matrix K02 -N 2304"), "ok", None))
    hss = "-pc_type python -pc_python_type hsspetsc.petsc.HSSPC"
    add(("example with -pc_hss_tol -1, 2 ranks",
         mpi(2, f"{PY} {ex} -matrix K02 -N 1024 {hss} -pc_hss_tol -1"), "raise", None))
    add(("example with a misspelt -pc_hss_tolerance -pc_hss_strict, 2 ranks",
         mpi(2, f"{PY} {ex} -matrix K02 -N 1024 {hss} -pc_hss_tolerance 1e-3 "
                f"-pc_hss_strict"), "raise", None))
    add(("example with a misspelt -pc_hss_tolerance, 2 ranks (a warning)",
         mpi(2, f"{PY} {ex} -matrix K02 -N 1024 {hss} -pc_hss_tolerance 1e-3"),
         "warn", None))
    return out


def prepare(tmp):
    """The files the cases read: bad matrices and bad checkpoints."""
    import numpy as np
    npy = os.path.join(tmp, "m")
    np.save(f"{npy}-nonsym.npy", np.random.default_rng(0).random((50, 50)))
    a = np.eye(40)
    a[3, 3] = np.nan
    np.save(f"{npy}-nan.npy", a)
    np.save(f"{npy}-rect.npy", np.ones((5, 4)))
    with open(f"{npy}-text.npy", "w") as f:
        f.write("1 2\n3 4\n")
    ck = os.path.join(tmp, "ck")
    open(f"{ck}-empty", "wb").close()
    with open(f"{ck}-garbage", "wb") as f:
        f.write(b"\x93NUMPY\xff\xfe garbage")
    with open(f"{ck}-truncated-zip", "wb") as f:
        f.write(b"PK\x03\x04\x14\x00 truncated")
    np.savez(f"{ck}-no-format", theta=np.zeros(3))
    os.makedirs(f"{ck}-folder", exist_ok=True)
    good = os.path.join(tmp, "good.npz")
    # made by this tree's hsspetsc even when PYTHONPATH points the cases elsewhere
    # (to probe an older tree: PYTHONPATH=/path/to/old tools/fault_probe.py)
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    subprocess.run(f"{PY} -m hsspetsc train {SMALL} --optimizer adam --checkpoint {good}",
                   shell=True, env=env, capture_output=True, check=True, cwd=ROOT)
    with np.load(good) as z:
        a = {k: z[k] for k in z.files}
    np.savez(f"{ck}-future", **dict(a, version=np.int64(99)))
    np.savez(f"{ck}-other-optimizer", **a)          # the runs use newton-hss
    th = a["theta"].copy()
    th[0] = np.nan
    meta = json.loads(str(a["meta"]))
    np.savez(f"{ck}-nan-theta", **dict(a, theta=th))
    meta["widths"] = [64, 9, 64]
    np.savez(f"{ck}-other-net", **dict(a, meta=np.array(json.dumps(meta))))


def crashed(rc, text):
    return (rc < 0 or rc in (134, 136, 139) or "Segmentation" in text
            or "Caught signal" in text or "MPI_ABORT" in text or "free():" in text)


def classify(kind, rc, text, log_ok):
    if rc is None:
        return "hang"
    if crashed(rc, text):
        return "crash"
    if not log_ok:
        return "lost"
    if kind == "ok":
        return "ok" if rc == 0 else ("traceback" if "Traceback" in text else "clear")
    if kind == "warn":
        return "warned" if rc == 0 and "WARNING" in text else "silent"
    if rc == 0 or text.rstrip().endswith("returned"):
        return "silent"
    if kind == "raise":
        # an exception of the library's (or the injected one), with a message
        pat = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*: \S")
        return "clear" if any(pat.match(ln) for ln in text.splitlines()) else "traceback"
    return "traceback" if "Traceback" in text else "clear"


def finish(p):
    """(output, exit code) of the process ``p``; None when it is still running at
    the timeout (its whole process group is killed)."""
    try:
        text, _ = p.communicate(timeout=TIMEOUT)
        return text, p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return p.communicate()[0], None


def run_case(cmd, log, cwd):
    if log:
        with open(log, "wb") as f:
            f.write(OLD_LOG)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, shell=True, env=ENV, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    text, rc = finish(p)
    log_ok = True
    if log:
        with open(log, "rb") as f:
            log_ok = f.read() == OLD_LOG
    return rc, text, log_ok, time.monotonic() - t0


def interrupt_cases(tmp):
    """Ctrl-C to mpiexec, SIGTERM to one rank, Ctrl-C serially: the job ends and the
    log holds every step made, as strict JSON."""
    res = []
    for name, n, target in [("Ctrl-C to mpiexec -n 2", 2, "launcher"),
                            ("SIGTERM to one of 2 ranks", 2, "rank"),
                            ("Ctrl-C to mpiexec -n 3", 3, "launcher"),
                            ("SIGTERM to the serial run", 0, "launcher"),
                            ("Ctrl-C to the serial run", 0, "launcher-int")]:
        log = os.path.join(tmp, f"int-{n}-{target}.json")
        cmd = train(f"--data digits --n 300 --layers 64,8,64 --optimizer adam "
                    f"--steps 10000000 --log {log}", n)
        p = subprocess.Popen(cmd.split(), env=ENV, cwd=tmp, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        t0 = time.monotonic()
        while not os.path.exists(log) and time.monotonic() - t0 < 30:
            time.sleep(0.2)
        time.sleep(1.0)
        if target == "rank":
            pids = subprocess.run(["pgrep", "-f", "--", f"--log {log}"], capture_output=True,
                                  text=True).stdout.split()
            os.kill(max(int(q) for q in pids if int(q) != p.pid), signal.SIGTERM)
        else:
            p.send_signal(signal.SIGINT if target != "launcher" or n else signal.SIGTERM)
        text, rc = finish(p)
        try:
            with open(log) as f:
                recs = json.load(f, parse_constant=lambda c: 1 / 0)
            log_ok = [r["iteration"] for r in recs] == list(range(len(recs))) and recs
        except Exception:  # noqa: BLE001 - any unreadable log is a loss
            log_ok = False
        if rc is None:
            verdict = "hang"
        elif crashed(rc, text) and rc not in (-2, -15):
            verdict = "crash"
        else:
            verdict = "ok" if log_ok else "lost"
        res.append((f"interrupt: {name}", " ".join(cmd.split()[:6]) + " ...", verdict,
                    rc, time.monotonic() - t0, text[-300:]))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="fault_probe.json")
    ap.add_argument("--only", default=None, help="run the cases whose name has this")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hsspetsc-probe-")
    try:
        prepare(tmp)
        results = []
        todo = [c for c in cases(tmp) if a.only is None or a.only in c[0]]
        for i, (name, cmd, kind, log) in enumerate(todo):
            rc, text, log_ok, dt = run_case(cmd, log, tmp)
            verdict = classify(kind, rc, text, log_ok)
            last = [ln for ln in text.strip().splitlines()
                    if ln.strip() and not re.match(r"^[-\s]*$", ln)]
            msg = next((ln for ln in last if "error" in ln.lower()), last[-1] if last else "")
            results.append((name, cmd, verdict, rc, dt, msg[:200]))
            print(f"[{i + 1:>3}/{len(todo)}] {verdict:<9} {dt:5.1f} s  {name}", flush=True)
        if a.only is None or "interrupt" in a.only:
            for r in interrupt_cases(tmp):
                results.append(r)
                print(f"[int] {r[2]:<9} {r[4]:5.1f} s  {r[0]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {}
    for r in results:
        counts[r[2]] = counts.get(r[2], 0) + 1
    print("\n| outcome | cases |\n|---|---|")
    for k in ("clear", "ok", "warned", "traceback", "silent", "hang", "crash", "lost"):
        print(f"| {k} | {counts.get(k, 0)} |")
    print(f"| total | {len(results)} |")
    bad = [r for r in results if r[2] not in ("clear", "ok", "warned")]
    for r in bad:
        print(f"\n{r[2]}: {r[0]}\n  {r[1]}\n  rc={r[3]}  {r[5]}")
    with open(a.out, "w") as f:
        json.dump({"counts": counts, "cases": [
            {"name": r[0], "command": r[1], "outcome": r[2], "rc": r[3],
             "seconds": round(r[4], 2), "message": r[5]} for r in results]}, f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
