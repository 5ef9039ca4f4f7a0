"""Errors that every rank sees: the collective protocol of hsspetsc.

One rank's exception must not leave the others waiting in a collective call. Every
collective of the library starts with an agreement (:meth:`_Comm.agree`, an
allgather of an error message or None); a rank that fails tells the others there,
and all of them raise the same :class:`CollectiveError`. Used by the distributed
HSS matrices (:mod:`hsspetsc.distributed`) and the data-parallel training
(:mod:`hsspetsc.training.distributed`).
"""
import numpy as np


class CollectiveError(RuntimeError):
    """An error on one rank, raised with the same message on every rank."""


class _Comm:
    """mpi4py communicator (or a serial stand-in) whose collectives cannot hang on
    another rank's error.

    Protocol: every collective starts with :meth:`agree` (an allgather of an error
    message, None when fine). A rank whose local work raises calls ``agree(err)``
    exactly once, from the top-level handler (:func:`fail_together`), and stops.
    The other ranks are, by construction, either in the ``agree`` of their next
    collective, which matches it, or computing towards it; they all get the error
    there and raise the same :class:`CollectiveError`. ``failed`` stays set, so a
    rank that learnt of the error inside a PETSc callback (where the exception is
    wrapped) does not agree a second time.
    """

    def __init__(self, comm=None):
        self.mpi = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.rank = 0 if comm is None else comm.Get_rank()
        self.failed = None                     # the CollectiveError, once raised
        self.all_failed_alike = False          # the last agreement: same error everywhere
        self.peers_leaving = False             # ... and some rank is exiting

    def agree(self, error=None):
        """Collective: raise the first failing rank's error on every rank."""
        if self.failed is not None:
            raise self.failed
        if self.size == 1:
            self.all_failed_alike = error is not None
            if error is not None:
                raise error         # nobody to tell: the error as it is
            return
        msgs = self.mpi.allgather(None if error is None
                                  else f"{type(error).__name__}: {error}")
        # (a DistributedHSSMatrix agreement sends (message, value) pairs)
        msgs = [m[0] if isinstance(m, tuple) else m for m in msgs]
        bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
        self.all_failed_alike = len(bad) == self.size and len(set(msgs)) == 1
        # a rank that failed with SystemExit is leaving: no further collective
        self.peers_leaving = any(m.startswith("SystemExit") for _, m in bad)
        if bad:
            r, m = bad[0]
            self.failed = CollectiveError(f"rank {r} of {self.size} failed: {m}")
            raise self.failed from error

    def sum(self, local, *args, out=None):
        """Sum over ranks of ``local(*args)`` (a scalar or ndarray), identical on
        every rank (a reduce to rank 0 and a broadcast: an allreduce may associate
        differently on different ranks). ``local`` may be a value instead of a
        callable. An exception in this rank's ``local`` is agreed here, at the
        collective every rank is heading to, and raised on all of them. ``out``: a
        float64 array of the result's shape to receive the sum (not ``local``'s
        own buffer; one rank returns ``local``'s value as it is)."""
        if callable(local):
            try:
                x = local(*args)
            except KeyboardInterrupt:
                raise           # an interrupt reaches every rank of mpiexec
            except BaseException as exc:  # noqa: BLE001 - agreed, raised on every rank
                _raise_agreed(self, exc)
        else:
            x = local
        self.agree()
        if self.size == 1:
            return x
        from mpi4py import MPI
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
        out = np.empty_like(arr) if out is None else out
        self.mpi.Reduce(arr, out, op=MPI.SUM, root=0)
        self.mpi.Bcast(out, root=0)
        return float(out) if np.ndim(x) == 0 else out

    def bcast(self, obj):
        self.agree()
        return obj if self.size == 1 else self.mpi.bcast(obj, root=0)

    def check_same(self, value, what):
        """Raise on every rank if ``value`` (bytes, str or array) differs between
        ranks, naming the ranks that differ from rank 0."""
        self.agree()
        if self.size == 1:
            return
        ref = self.mpi.bcast(value if self.rank == 0 else None, root=0)
        same = ref == value if not isinstance(value, np.ndarray) else np.array_equal(ref, value)
        flags = self.mpi.allgather(bool(same))
        if not all(flags):
            odd = [r for r, f in enumerate(flags) if not f]
            self.failed = CollectiveError(f"the ranks disagree on {what}: rank(s) {odd} "
                                          f"differ from rank 0")
            raise self.failed


def fail_together(comm, fn, *args, **kwargs):
    """Run ``fn``; an exception on this rank is agreed with the others (and raised
    as the same CollectiveError everywhere) unless it already was."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        raise                   # an interrupt reaches every rank of mpiexec
    except BaseException as exc:  # noqa: BLE001 - re-raised below, on every rank
        _raise_agreed(comm, exc)


def _raise_agreed(comm, exc):
    """Tell the other ranks of this rank's ``exc`` (at the agreement they are in or
    heading to) and raise: the CollectiveError every rank raises; but a rank that
    is leaving (SystemExit) still leaves, and a FloatingPointError seen by every
    rank alike (a NaN step: their parameters are bitwise the same) is not a fault
    and is raised as it is, so the caller can stop cleanly."""
    if comm.failed is not None:
        if isinstance(exc, SystemExit):
            raise exc
        raise comm.failed from exc
    if isinstance(exc, CollectiveError) or getattr(exc, "_hsspetsc_agreed", False):
        # raised by an agreement (of another _Comm on the same ranks): every rank
        # has it already
        comm.failed = exc
        raise exc
    try:
        comm.agree(exc)
    except CollectiveError:
        if isinstance(exc, SystemExit):
            raise exc from None
        if isinstance(exc, FloatingPointError) and comm.all_failed_alike:
            comm.failed = None
            raise exc from None
        raise
    raise exc                   # not reached: agree raised
