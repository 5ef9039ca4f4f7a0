"""hsspetsc: geometry-oblivious hierarchical (HSS/FMM) compression of dense SPD
matrices from their entries, with Cython/OpenMP kernels.

Public API::

    H = hsspetsc.compress(source, leaf_size=128, max_rank=None, tol=1e-5,
                          neighbors=32, budget=0.0, distance="angle", seed=0)
    H = hsspetsc.compress(source, shift=lam, tol=0.5)   # |K - H~|_2 <= 0.5 lam
    H = hsspetsc.compress_sketch(source, samples=256, tol=1e-4)   # from products
    H2 = hsspetsc.refresh(H, source2)  # same tree and skeletons, blocks of source2
    D = hsspetsc.compress(source, comm=MPI.COMM_WORLD)   # each rank its subtree
    params = hsspetsc.tune(source, tol=1e-6); H = hsspetsc.compress(source, **params)
    U = H @ W                       # O(N s) per column
    F = H.factorize(shift=1e-2)     # O(N s^2); F.solve(B), F.logdet()
    x, info = hsspetsc.solve(source, y, shift=lam)   # dense / HSS / HSS-PCG
    hsspetsc.relative_error(H, source)
    hsspetsc.gallery.kernel_matrix(points, "gaussian", bandwidth=1.0)
    hsspetsc.gallery.testsuite("K02", 4096)
    hsspetsc.EntrySource(n, entries, diagonal)
    hsspetsc.mlp.GaussNewton(hsspetsc.mlp.MLP([64, 32, 64]), X, X)   # a source too

scikit-learn estimators: ``hsspetsc.kernel_ridge.KernelRidge`` and
``hsspetsc.gaussian_process.GaussianProcessRegressor`` (they import sklearn).
PETSc (shell Mat, HSSPC, SLEPc rank checks) lives in ``hsspetsc.petsc`` and training
in ``hsspetsc.training`` / ``python -m hsspetsc train``; both import petsc4py, the
modules above do not.
"""
from . import baselines, gallery, mlp
from .compression.compress import compress, compress_sketch, refresh
from .compression.tune import TunedParams, tune
from .krylov import SolveInfo, solve
from .matrix.accuracy import relative_error
from .matrix.distributed import DistributedHSSMatrix, distribute
from .matrix.factor import FactorizationError, HSSFactorization
from .matrix.hss import HSSMatrix, load
from .mpi.comm import CollectiveError, Comm
from .sources import DenseSource, EntrySource, KernelSource, Source
from .util.blocks import IncompressibleError
from .version import __version__


def validate_ranks(H, source, nodes=8, **kwargs):
    """Chosen skeleton ranks against SLEPc numerical ranks (needs slepc4py); see
    :func:`hsspetsc.petsc.validate_ranks`."""
    from .petsc import validate_ranks as _validate
    return _validate(H, source, nodes=nodes, **kwargs)

__all__ = ["compress", "compress_sketch", "refresh", "DistributedHSSMatrix", "distribute",
           "Comm", "CollectiveError",
           "tune", "TunedParams", "load", "HSSMatrix", "HSSFactorization", "FactorizationError", "IncompressibleError",
           "solve", "SolveInfo", "relative_error", "EntrySource", "DenseSource",
           "KernelSource", "Source", "gallery", "mlp", "baselines", "validate_ranks",
           "__version__"]
