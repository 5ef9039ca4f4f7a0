"""PETSc side of the collective protocol (:mod:`hsspetsc.mpi.comm`): run a
step on every rank of a PETSc communicator, and release PETSc handles cleanly."""
import atexit
import functools
import gc

from petsc4py import PETSc

from ..mpi.comm import Comm


def release_refs(method):
    """Decorator for python Mat/PC protocol methods: an exception leaves without the
    frames (and so without the PETSc objects they hold). A traceback that keeps a
    python PC or Mat alive past PetscFinalize segfaults the interpreter at exit."""
    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except Exception as exc:  # noqa: BLE001 - re-raised without its frames
            err = exc.with_traceback(None)
        args = None
        raise err
    return wrapper


def collective(comm, fn, *args, **kwargs):
    """Run ``fn`` on every rank of ``comm`` (a PETSc or mpi4py communicator, or a
    :class:`hsspetsc.mpi.comm.Comm`). If it raises on any rank, every rank
    raises the same :class:`~hsspetsc.mpi.comm.CollectiveError` (a
    RuntimeError naming the first failing rank and its message), so no rank is
    left waiting in a later collective call; on one rank the error as it is."""
    return Comm.of(comm).together(fn, *args, **kwargs)


def comm_of(obj):
    return obj.getComm() if hasattr(obj, "getComm") else PETSc.COMM_WORLD


_CLEANUP_REGISTERED = False


def register_exit_cleanup():
    """Destroy, at interpreter exit, every PETSc handle still holding an hsspetsc
    python context (a PC with HSSPC, a Mat with HSSMatContext).

    Python-level atexit handlers run before PETSc finalizes, so here the handles can
    still be destroyed cleanly; a handle destroyed later, during the interpreter's
    own teardown, calls back into a half-dismantled Python and crashes the process
    (the idiom ``pc = ksp.getPC(); pc.setPythonContext(HSSPC())`` with ``pc`` alive
    at exit). Registered once, by the first context created."""
    global _CLEANUP_REGISTERED
    if _CLEANUP_REGISTERED:
        return
    atexit.register(_destroy_live_handles)
    _CLEANUP_REGISTERED = True


def _ours(obj, HSSPC, HSSMatContext):
    """Whether a live handle holds an hsspetsc python context, itself or through
    its solver's preconditioner or operators."""
    if isinstance(obj, (PETSc.PC, PETSc.Mat)):
        return obj.getType() == "python" and isinstance(
            obj.getPythonContext(), (HSSPC, HSSMatContext))
    if isinstance(obj, PETSc.TAO):
        obj = obj.getKSP()
        if obj is None or not obj.handle:
            return False
    if isinstance(obj, PETSc.KSP):
        A, P = obj.getOperators()
        return any(o.handle and _ours(o, HSSPC, HSSMatContext)
                   for o in (obj.getPC(), A, P))
    return False


def _destroy_live_handles():

    from ._mat import HSSMatContext
    from ._pc import HSSPC
    if not PETSc.Sys.isInitialized() or PETSc.Sys.isFinalized():
        return
    live = [o for o in gc.get_objects() if isinstance(o, PETSc.Object)]
    # solvers first (they hold the PCs and Mats), then the PCs and Mats themselves
    for kinds in ((PETSc.TAO, PETSc.KSP), (PETSc.PC, PETSc.Mat)):
        for obj in live:
            try:
                if isinstance(obj, kinds) and obj.handle and _ours(obj, HSSPC,
                                                                   HSSMatContext):
                    obj.destroy()
            except Exception:  # noqa: BLE001 - best effort at exit, never raise there
                pass
