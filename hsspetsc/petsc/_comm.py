"""Collective error handling: one rank's exception is raised on every rank."""
import functools

from petsc4py import PETSc


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
    """Run ``fn`` on every rank of ``comm`` (a PETSc Comm). If it raises on any rank,
    raise on all ranks (the first failing rank's message), so no rank is left
    waiting in a later collective call."""
    mpi = comm.tompi4py()
    err = None
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        err = exc
        result = None
    if mpi.Get_size() == 1:
        if err is not None:
            raise err
        return result
    msgs = mpi.allgather(None if err is None else f"{type(err).__name__}: {err}")
    bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
    if bad:
        if err is not None:
            raise err
        rank, msg = bad[0]
        raise RuntimeError(f"rank {rank} failed: {msg}")
    return result


def comm_of(obj):
    return obj.getComm() if hasattr(obj, "getComm") else PETSc.COMM_WORLD
