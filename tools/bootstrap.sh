#!/usr/bin/env bash
# Set up everything hsspetsc needs on a fresh Debian/Ubuntu machine:
#   1. system packages (PETSc, SLEPc, MPI, numpy, scipy) when petsc4py is missing,
#   2. the project venv (.venv, from /usr/bin/python3 with system site packages),
#   3. Cython >= 3, pytest and ruff in the venv, the package installed editable.
# Quick when already done: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

SYS_PY=/usr/bin/python3
APT_PKGS="python3-petsc4py python3-slepc4py python3-mpi4py petsc-dev slepc-dev \
python3-numpy python3-scipy python3-venv python3-dev python3-threadpoolctl \
python3-matplotlib openmpi-bin build-essential libopenblas0-pthread \
python3-sklearn dataset-fashion-mnist"

have_system_stack() {
    [ -x "$SYS_PY" ] || return 1
    "$SYS_PY" - <<'PY' 2>/dev/null || return 1
import petsc4py, slepc4py, mpi4py, numpy, scipy, threadpoolctl, matplotlib, venv, sklearn
PY
    [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || return 1
    # numpy must run on OpenBLAS, not the reference BLAS (10x slower)
    [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] || \
        dpkg -s libopenblas0-pthread >/dev/null 2>&1
}

if ! have_system_stack; then
    echo "[bootstrap] installing system packages: $APT_PKGS"
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "[bootstrap] ERROR: need root or sudo to install: $APT_PKGS" >&2
        echo "[bootstrap] install them by hand, then run make again." >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null; then
        echo "[bootstrap] ERROR: no apt-get; this recipe is for Debian/Ubuntu. Install: $APT_PKGS" >&2
        exit 1
    fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $APT_PKGS
    have_system_stack || { echo "[bootstrap] ERROR: system packages installed but petsc4py still not importable" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
    echo "[bootstrap] creating .venv from $SYS_PY (system site packages)"
    "$SYS_PY" -m venv --system-site-packages .venv
fi

# numpy stays the system's 1.x: Debian's petsc4py is built against it.
echo "numpy<2" > .venv/constraints.txt
if ! .venv/bin/python -c "import Cython, pytest, sys; sys.exit(int(Cython.__version__.split('.')[0]) < 3)" 2>/dev/null; then
    echo "[bootstrap] installing Cython>=3 and pytest into .venv"
    .venv/bin/python -m pip install -q -c .venv/constraints.txt "cython>=3" pytest
fi
if [ ! -x .venv/bin/ruff ]; then
    echo "[bootstrap] installing the linter (ruff) into .venv"
    .venv/bin/python -m pip install -q -c .venv/constraints.txt ruff
fi
