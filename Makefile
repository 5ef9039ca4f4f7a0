# hsspetsc: `make test` and `make demo` set up everything they need on a fresh
# Debian/Ubuntu machine (system packages, .venv, the compiled kernels) and are
# quick when that is already done.
VENV    := .venv
PY      := $(VENV)/bin/python
SETUP   := $(VENV)/.setup-stamp
BUILD   := $(VENV)/.build-stamp
PYX     := $(wildcard hsspetsc/kernels/*.pyx hsspetsc/kernels/*.pxd)

# OpenMPI as root, more ranks than cores, no core binding (it would silently turn
# prange into one thread); ranks x threads <= cores.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export OMPI_MCA_hwloc_base_binding_policy := none

.PHONY: all setup test demo demo-compress bench docs clean

all: test

setup: $(BUILD)

$(SETUP): tools/bootstrap.sh pyproject.toml setup.py
	bash tools/bootstrap.sh
	$(PY) -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import hsspetsc" 2>/dev/null || { echo "editable install of hsspetsc failed"; exit 1; }
	touch $@

$(BUILD): $(SETUP) $(PYX) setup.py
	@echo "[setup] compiling the Cython/OpenMP kernels (about a minute the first time)"
	$(PY) setup.py -q build_ext --inplace
	touch $@

MPITEST := timeout 900 mpiexec --oversubscribe -n
MPIPYTEST := $(PY) -m pytest -q -p no:cacheprovider --color=no tests/mpi

test: $(BUILD)
	.venv/bin/ruff check hsspetsc tests bench examples tools
	OMP_NUM_THREADS=2 $(PY) -m pytest -q --ignore=tests/mpi tests
	OMP_NUM_THREADS=1 $(MPITEST) 1 $(MPIPYTEST)
	OMP_NUM_THREADS=1 $(MPITEST) 2 $(MPIPYTEST)
	OMP_NUM_THREADS=1 $(MPITEST) 3 $(MPIPYTEST)
	OMP_NUM_THREADS=1 $(MPITEST) 4 $(MPIPYTEST)

# The main job: an autoencoder on 2000 Fashion-MNIST images (200 more held out)
# trained under mpiexec -n 2 with newton-hss, newton-cg (no preconditioner),
# newton-hf (Martens' diagonal), newton-kfac, L-BFGS and Adam (learning rate picked
# from a grid by short trials), 30 s of optimizer time each; every Newton method
# takes the CG iterate Martens' backtracking picks (bench/bench_demo_practice.py:
# the variants of the Hessian-free practice tried on this net).
demo: $(BUILD)
	OMP_NUM_THREADS=1 timeout 900 mpiexec --oversubscribe -n 2 $(PY) -m hsspetsc train \
	    --data fashion-mnist --n 2000 --layers 784,32,784 --activation tanh \
	    --compare newton-hss,newton-cg,newton-hf,newton-kfac,lbfgs,adam --time-budget 30 \
	    --lr-grid 1e-3,3e-3,1e-2,3e-2 --curvature-samples 128 --cg-backtrack \
	    --log demo_train.json --plot demo_train.png

demo-compress: $(BUILD)
	OMP_NUM_THREADS=2 $(PY) examples/demo_compress.py

bench: $(BUILD)
	OMP_NUM_THREADS=2 $(PY) bench/bench_compress.py
	OMP_NUM_THREADS=2 $(PY) bench/bench_accuracy.py
	OMP_NUM_THREADS=2 $(PY) bench/bench_factor.py
	OMP_NUM_THREADS=2 $(PY) bench/bench_pcg.py
	OMP_NUM_THREADS=2 $(PY) bench/bench_pc_curvature.py
	OMP_NUM_THREADS=2 $(PY) bench/bench_pc_curvature.py --hss 2,4 --hss-samples 512
	OMP_NUM_THREADS=2 $(PY) bench/bench_gn_products.py
	OMP_NUM_THREADS=2 $(PY) bench/bench_gn_compare.py
	OMP_NUM_THREADS=2 $(PY) bench/gn_structure.py a
	OMP_NUM_THREADS=2 $(PY) bench/bench_train.py --budget 30 --nets c
	OMP_NUM_THREADS=2 $(PY) bench/bench_train.py --nets dae --budget 150 --no-system \
	    --curvature-samples 16 --hss-samples 64 --out bench/bench_train_dae.json
	OMP_NUM_THREADS=1 $(PY) bench/bench_scaling.py --largest 2097152
	OMP_NUM_THREADS=2 $(PY) bench/bench_krr.py
	$(PY) bench/make_results.py

# The API reference from the docstrings (Sphinx; installs python3-sphinx if missing).
docs: $(BUILD)
	bash tools/docs.sh

clean:
	rm -rf build hsspetsc/kernels/*.so hsspetsc/kernels/*.c $(SETUP) $(BUILD)
