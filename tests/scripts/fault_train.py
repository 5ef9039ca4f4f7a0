"""``python -m hsspetsc train`` with one fault injected on the last MPI rank.

Usage: fault_train.py FAULT [train arguments...]; FAULT is one of
  none        no fault
  gn-entries  the Gauss-Newton entries raise (inside the HSS preconditioner)
  gn-product  the Gauss-Newton products raise (inside CG)
  loss        the loss raises at the third evaluation (the line search)
  exit-step   the rank leaves with sys.exit(3) in its third step
"""
import os
import sys

from hsspetsc import cli
from hsspetsc.mlp import MLP
from hsspetsc.mlp.gauss_newton import GaussNewton

fault = sys.argv[1]
rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))


def boom(*args, **kwargs):
    raise RuntimeError(f"injected fault {fault}")


if rank == size - 1:
    if fault == "gn-entries":
        GaussNewton._gn_evaluator = boom
    elif fault == "gn-product":
        GaussNewton.matvec = boom
    elif fault in ("loss", "exit-step"):
        real, calls = MLP.loss, []

        def loss(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                if fault == "exit-step":
                    sys.exit(3)
                boom()
            return real(self, *args, **kwargs)
        MLP.loss = loss
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault}")
sys.exit(cli.main(sys.argv[2:]))
