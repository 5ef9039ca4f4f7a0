"""The example scripts run as a user runs them, in a subprocess."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args],
                       capture_output=True, text=True, env=env, timeout=600)
    return p.returncode, p.stdout + p.stderr


def _iterations(out):
    m = re.search(r"(\d+) iterations, reason (-?\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_kernel_pcg_options_database():
    common = ["-matrix", "K02", "-N", "1024", "-budget", "0.02", "-ksp_type", "cg"]
    rc, out = run("kernel_pcg.py", *common, "-pc_type", "none")
    assert rc == 0, out
    it_none, reason_none = _iterations(out)
    rc, out = run("kernel_pcg.py", *common, "-pc_type", "python", "-pc_python_type",
                  "hsspetsc.petsc.HSSPC", "-pc_hss_tol", "1e-5", "-ksp_view")
    assert rc == 0, out
    it_hss, reason_hss = _iterations(out)
    assert reason_none > 0 and reason_hss > 0
    assert it_hss < it_none / 3
    assert "HSSPC: compressed the operator's source" in out      # -ksp_view reached view()
    err = float(re.search(r"solve error \|x - w\|/\|w\| = ([0-9.e+-]+)", out).group(1))
    assert err < 1e-5


def test_kernel_pcg_bad_option_exits_cleanly():
    rc, out = run("kernel_pcg.py", "-matrix", "K02", "-N", "1024", "-pc_type", "python",
                  "-pc_python_type", "hsspetsc.petsc.HSSPC", "-pc_hss_distance", "cosine")
    assert rc == 1, out                      # a Python error, not a segfault (139/59)
    assert "'distance' parameter of HSSPC" in out


def test_kernel_pcg_distributed_under_mpiexec():
    """-distributed: the operator stored across 2 ranks, HSSPC factors it
    distributed (1-2 iterations: H~ is inverted exactly), -ksp_view prints the
    memory of each rank."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_hwloc_base_binding_policy="none")
    p = subprocess.run(["mpiexec", "--oversubscribe", "-n", "2", sys.executable,
                        os.path.join(ROOT, "examples", "kernel_pcg.py"), "-matrix",
                        "gaussian", "-N", "4096", "-distributed", "-ksp_type", "cg",
                        "-pc_type", "python", "-pc_python_type", "hsspetsc.petsc.HSSPC",
                        "-ksp_view"], capture_output=True, text=True, env=env,
                       timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    it, reason = _iterations(out)
    assert reason > 0 and it <= 3
    assert "rank 0:" in out and "rank 1:" in out
    err = float(re.search(r"solve error \|x - w\|/\|w\| = ([0-9.e+-]+)", out).group(1))
    assert err < 1e-8


def test_kernel_ridge_fashion_example():
    rc, out = run("kernel_ridge_fashion.py", "--n", "1500", "--n-test", "400",
                  "--method", "pcg", "--tol", "30")
    assert rc == 0, out
    acc = dict(re.findall(r"(\w+): fit .* test accuracy ([0-9.]+)", out))
    assert set(acc) == {"pcg", "dense"}, out
    # CG to a residual of 1e-3 changes at most a few of 400 predictions
    assert abs(float(acc["pcg"]) - float(acc["dense"])) <= 0.01, out
    assert float(acc["dense"]) > 0.7, out
