"""Faults of the training command, serial and under ``mpiexec -n 2``: every one ends
in a clear error on every rank within a short timeout, and no log is lost.

Each case runs a real ``python -m hsspetsc train`` in a subprocess under
``timeout``; a hang fails the test (subprocess.TimeoutExpired)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("petsc4py")

from hsspetsc.mlp import MLP, load  # noqa: E402
from hsspetsc.training import ShardedProblem, Trainer, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT = os.path.join(ROOT, "tests", "scripts", "fault_train.py")
SMALL = ["--data", "digits", "--n", "300", "--layers", "64,8,64", "--steps", "3"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
           OMPI_MCA_hwloc_base_binding_policy="none")
TIMEOUT = 90          # seconds; each case takes a few


def _cmd(args, ranks):
    cmd = [sys.executable] + args
    return cmd if ranks == 0 else ["mpiexec", "--oversubscribe", "-n", str(ranks)] + cmd


def _train(args, ranks=0, fault=None, cwd=ROOT):
    args = ([FAULT, fault, "train"] if fault else ["-m", "hsspetsc", "train"]) + args
    p = subprocess.run(_cmd(args, ranks), capture_output=True, text=True, env=ENV,
                       timeout=TIMEOUT, cwd=cwd)
    return p.returncode, p.stdout + p.stderr


def _errors(out):
    """The 'hsspetsc train: error (rank R of P): MESSAGE' lines: {R: MESSAGE} (the
    ranks' lines may interleave; each is one write)."""
    pat = re.compile(r"hsspetsc train: error(?: \(rank (\d+) of \d+\))?: "
                     r"(.*?)(?=hsspetsc train: error|\n|$)")
    return {int(r or 0): m.strip() for r, m in pat.findall(out)}


def _strict_json(path):
    def refuse(c):
        raise ValueError(f"non-standard JSON constant {c}")
    with open(path) as f:
        return json.load(f, parse_constant=refuse)


# ---------------------------------------------------------------- one rank fails
@pytest.mark.parametrize("fault", ["gn-entries", "gn-product", "loss"])
@pytest.mark.parametrize("ranks", [0, 2])
def test_one_rank_error_is_every_ranks_clear_error(tmp_path, fault, ranks):
    # entries inside the HSS preconditioner, products inside CG, the loss in the
    # line search: the last rank raises
    rc, out = _train(SMALL + ["--log", str(tmp_path / "l.json")], ranks, fault)
    assert rc != 0, out
    assert f"injected fault {fault}" in out
    if ranks:
        errs = _errors(out)
        assert sorted(errs) == [0, 1], out                   # every rank says it
        assert len(set(errs.values())) == 1, errs            # the same message
        assert f"rank 1 of 2 failed: RuntimeError: injected fault {fault}" in errs[0]


def test_rank_that_exits_does_not_leave_the_others_waiting(tmp_path):
    rc, out = _train(SMALL, 2, "exit-step")
    assert rc != 0
    assert _errors(out)[0] == "rank 1 of 2 failed: SystemExit: 3", out


# ------------------------------------------------------------------ bad outputs
@pytest.mark.parametrize("ranks", [0, 2])
@pytest.mark.parametrize("option", ["--log", "--checkpoint", "--plot"])
def test_output_in_a_missing_folder_fails_before_any_work(option, ranks):
    rc, out = _train(SMALL + [option, "/nonexistent-hsspetsc/x.out"], ranks)
    assert rc == 1, out
    assert f"The {option} path /nonexistent-hsspetsc/x.out: the folder" in out
    assert " step " not in out                       # nothing was trained
    if ranks:
        assert sorted(_errors(out)) == [0, 1]


def test_log_that_is_a_folder(tmp_path):
    rc, out = _train(SMALL + ["--log", str(tmp_path)], 2)
    assert rc == 1 and "is a folder" in out


# ----------------------------------------------------------- ranks must agree
@pytest.mark.parametrize("first,second", [
    (["--layers", "64,16,64"], ["--layers", "64,12,64"]),
    (["--layers", "64,8,64", "--seed", "0"], ["--layers", "64,8,64", "--seed", "1"]),
    (["--layers", "64,8,64", "--n", "300"], ["--layers", "64,8,64", "--n", "301"]),
    (["--layers", "64,8,64"], ["--layers", "64,8,64", "-ksp_rtol", "1e-3"]),
])
def test_ranks_started_differently_stop_with_a_clear_error(first, second):
    common = [sys.executable, "-m", "hsspetsc", "train", "--data", "digits", "--steps", "2"]
    cmd = (["mpiexec", "--oversubscribe", "-n", "1"] + common + first + [":", "-n", "1"]
           + common + second)
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=TIMEOUT,
                       cwd=ROOT)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out                 # not 134 (abort) nor 0
    errs = _errors(out)
    assert sorted(errs) == [0, 1], out
    assert all("the ranks disagree on the command line: rank(s) [1]" in m
               for m in errs.values())


# ------------------------------------------------------------ logs are kept
@pytest.mark.parametrize("ranks", [0, 2])
@pytest.mark.parametrize("bad", [["-pc_hss_tol", "-1"], ["--lam", "nan"],
                                 ["--layers", "64,8,63"], ["--resume", "/nonexistent.npz"]])
def test_failing_run_leaves_an_existing_log_byte_for_byte(tmp_path, bad, ranks):
    log = tmp_path / "log.json"
    old = b'[{"optimizer": "adam", "iteration": 0, "loss": 1.5}]\n'
    log.write_bytes(old)
    args = [a for a in SMALL if a != "64,8,64" and a != "--layers"] if "--layers" in bad \
        else list(SMALL)
    rc, out = _train(args + ["--log", str(log)] + bad, ranks)
    assert rc != 0, out
    assert log.read_bytes() == old
    assert [f for f in os.listdir(tmp_path) if f != "log.json"] == []   # no temporaries


def test_nan_loss_is_written_as_null_with_a_flag(tmp_path):
    log = str(tmp_path / "l.json")
    rc, out = _train(["--data", "digits", "--n", "200", "--layers", "64,8,64",
                      "--optimizer", "sgd", "--lr", "1e30", "--steps", "4", "--log", log])
    recs = _strict_json(log)                      # strict JSON even so
    assert rc == 0, out
    nulls = [r for r in recs if any(v is None for v in r.values())]
    assert nulls and all(r.get("nonfinite") for r in nulls)


def _wait_for_records(path, n, proc, limit=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        assert proc.poll() is None, "the run ended early"
        try:
            if len(_strict_json(path)) >= n:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError("no records appeared")


@pytest.mark.parametrize("target", ["mpiexec", "one-rank"])
def test_interrupt_under_mpiexec_leaves_a_complete_strict_log(tmp_path, target):
    # Ctrl-C to mpiexec (it signals every rank), or SIGTERM to one rank only (an
    # operator's kill): the job ends, and the log holds every step that was made
    log = str(tmp_path / "log.json")
    args = ["-m", "hsspetsc", "train", "--data", "digits", "--n", "300", "--layers",
            "64,8,64", "--optimizer", "adam", "--steps", "1000000", "--log", log]
    proc = subprocess.Popen(_cmd(args, 2), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT,
                            start_new_session=True)
    try:
        _wait_for_records(log, 20, proc)
        if target == "mpiexec":
            proc.send_signal(signal.SIGINT)
        else:
            ranks = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                   text=True).stdout.split()
            kids = [int(r) for r in ranks]
            # mpiexec's children may be the ranks themselves or a launcher's
            grand = subprocess.run(["pgrep", "-f", log], capture_output=True,
                                   text=True).stdout.split()
            targets = [int(g) for g in grand if int(g) != proc.pid] or kids
            os.kill(max(targets), signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    recs = _strict_json(log)
    assert [r["iteration"] for r in recs] == list(range(len(recs)))
    printed = [line for line in out.splitlines() if line.startswith("adam ") and " step " in line]
    assert len(recs) >= len(printed) >= 1 or len(recs) >= 20


# ------------------------------------------------------------------ checkpoints
def _small_trainer():
    X, _ = load("digits", 120)
    return Trainer(ShardedProblem(MLP([64, 5, 64], seed=0), X, X), "adam", lr=1e-2)


@pytest.mark.parametrize("content,why", [
    (b"", "not a readable checkpoint"),
    (b"\x93NUMPY garbage \xff\xfe", "not a readable checkpoint"),
    ("npz-no-format", "not an hsspetsc checkpoint"),
    ("npz-no-meta", "incomplete"),
    ("other-net", "it is of a net"),
    ("future", "newer than this hsspetsc reads"),
])
def test_unreadable_checkpoint_names_the_file(tmp_path, content, why):
    path = str(tmp_path / "ck.npz")
    if content == "npz-no-format":
        np.savez(path, theta=np.zeros(3))
    elif content in ("npz-no-meta", "future"):
        t = _small_trainer()
        run(t, max_steps=1, checkpoint=path, printer=None)
        with np.load(path) as z:
            a = {k: z[k] for k in z.files}
        if content == "npz-no-meta":
            del a["meta"]
        else:
            a["version"] = np.int64(99)
        np.savez(path, **a)
    elif content == "other-net":
        X, _ = load("digits", 120)
        t = Trainer(ShardedProblem(MLP([64, 4, 64], seed=0), X, X), "adam", lr=1e-2)
        run(t, max_steps=1, checkpoint=path, printer=None)
    else:
        with open(path, "wb") as f:
            f.write(content)
    t = _small_trainer()
    with pytest.raises(ValueError, match=why) as e:
        t.load(path)
    assert f"checkpoint {path}:" in str(e.value)
    assert t.step_count == 0                     # nothing half-loaded


def test_corrupt_checkpoint_on_the_command_line(tmp_path):
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"PK\x03\x04 truncated")
    rc, out = _train(SMALL + ["--resume", str(ck)], 2)
    assert rc == 1
    errs = _errors(out)
    assert sorted(errs) == [0, 1] and all(f"checkpoint {ck}" in m for m in errs.values())


def test_resume_under_mpiexec_continues_the_run_exactly(tmp_path):
    # 4 steps in one go == 2 steps, checkpoint, resume, 2 more (2 ranks, newton-hss)
    args = ["--data", "digits", "--n", "300", "--layers", "64,8,64", "--rebuild", "3",
            "--curvature-samples", "64"]
    rc, out = _train(args + ["--steps", "4", "--log", str(tmp_path / "a.json")], 2)
    assert rc == 0, out
    ck = str(tmp_path / "ck.npz")
    rc, out = _train(args + ["--steps", "2", "--checkpoint", ck], 2)
    assert rc == 0, out
    rc, out = _train(args + ["--steps", "4", "--resume", ck, "--log",
                             str(tmp_path / "b.json")], 2)
    assert rc == 0, out
    a, b = _strict_json(tmp_path / "a.json"), _strict_json(tmp_path / "b.json")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["cg_iterations"] for r in a] == [r["cg_iterations"] for r in b]


# --------------------------------------------------------------------- numbers
@pytest.mark.parametrize("option,value,text", [
    ("--batch-size", "0", "The 'batch-size' parameter"),
    ("--rebuild", "0", "The 'rebuild' parameter"),
    ("--lam", "-1", "The 'lam' parameter"),
    ("--lam", "nan", "The 'lam' parameter"),
    ("--cg-max-it", "0", "The 'cg-max-it' parameter"),
    ("--curvature-samples", "0", "The 'curvature-samples' parameter"),
    ("--n", "0", "The 'n' parameter"),
    ("--steps", "-3", "The 'steps' parameter"),
    ("--time-budget", "-1", "The 'time-budget' parameter"),
    ("--lr", "inf", "The 'lr' parameter"),
    ("-pc_hss_validate", "-3", "The 'validate' parameter of HSSPC"),
    ("-pc_hss_tol", "-1", "The 'tol' parameter of HSSPC"),
])
def test_numbers_out_of_range_are_refused_with_the_value(option, value, text):
    rc, out = _train(SMALL + [option, value])
    assert rc != 0, out
    assert text in out and f"Got {value}" in out.replace("Got -1.0", "Got -1"), out
    assert "PETSC ERROR" not in out and "Traceback" not in out
