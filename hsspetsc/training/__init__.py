"""Training: data-parallel problems, Newton-Krylov with HSS-preconditioned
Gauss-Newton steps (PETSc), first-order baselines, the driver behind the CLI."""
from .distributed import DistributedGN, ShardedProblem
from .memory import MemoryPlanError, estimate_newton
from .run import OPTIMIZER_NAMES, Trainer, run, write_log

__all__ = ["ShardedProblem", "DistributedGN", "Trainer", "run", "write_log",
           "OPTIMIZER_NAMES", "MemoryPlanError", "estimate_newton"]
