"""PETSc adapters: a python shell Mat for shift*I + H~ and a python PC (HSSPC)::

    A = hsspetsc.petsc.as_petsc_mat(H, shift=lam)     # KSP operator
    -pc_type python -pc_python_type hsspetsc.petsc.HSSPC -pc_hss_tol 1e-3

The library never calls ``petsc4py.init``; scripts do, first. Vectors are in the
user's index order (the tree permutation stays inside). An HSSMatrix is replicated
on every rank (vectors are gathered, each rank keeps its rows); a
DistributedHSSMatrix (``hsspetsc.compress(..., comm=...)``) stays distributed and
Vecs are scattered to its rows and back (``-pc_hss_distributed`` makes HSSPC
compress that way). A python Mat whose context is an :class:`HSSProvider`
hands HSSPC its own H~ (the trainer's Gauss-Newton operator does).
"""
from ._comm import collective, release_refs
from ._mat import HSSMatContext, as_petsc_mat
from ._pc import HSSPC, compress_with_options
from ._validate import format_rank_table, validate_ranks
from .provider import HSSProvider

__all__ = ["as_petsc_mat", "HSSMatContext", "HSSPC", "HSSProvider", "validate_ranks",
           "format_rank_table", "collective", "compress_with_options", "release_refs"]
