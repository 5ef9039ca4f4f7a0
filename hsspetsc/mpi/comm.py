"""One communicator for a whole command: errors that every rank sees.

One rank's exception must not leave the others waiting in a collective call. A
:class:`Comm` is made once where a command starts (the CLI, ``compress(comm=)``,
:class:`~hsspetsc.petsc.HSSPC`, :class:`~hsspetsc.training.ShardedProblem`) and
passed down; every collective of the package goes through it, and every one starts
with an agreement (:meth:`Comm.agree`: one allgather of an error message, or None,
and a value). A rank that fails tells the others there, and every rank raises the
same :class:`CollectiveError`.
"""
import numpy as np

from ..util.blocks import exclusive_cumsum


class CollectiveError(RuntimeError):
    """An error on one rank, raised with the same message on every rank."""


class Comm:
    """An mpi4py communicator (or None: one process) whose collectives cannot hang
    on another rank's error. ``Comm.of(c)`` accepts a Comm (returned as it is), an
    mpi4py or PETSc communicator, or None.

    Protocol: every collective starts with an agreement, one allgather of a pair
    (error message or None, value). A rank whose local work raises agrees on it
    exactly once, from :meth:`run` (the top-level handler) or from the collective
    whose local part failed (:meth:`sum`), and stops. The other
    ranks are, by construction, either in the agreement of their next collective,
    which matches it, or computing towards it; they all get the error there and
    raise the same :class:`CollectiveError`, the failing rank too. An error that
    every rank met alike (the same type and message: a bad option, a NaN step on
    bitwise equal parameters) is raised as it is on every rank; so is any error
    with one process, where nothing is communicated.

    ``failed`` is the error agreed last and ``told`` this rank's own error in that
    agreement; when either reaches :meth:`run` (directly, or re-raised by PETSc
    from a callback) it is not agreed a second time.
    """

    def __init__(self, mpi=None):
        self.mpi = mpi
        self.size = 1 if mpi is None else mpi.Get_size()
        self.rank = 0 if mpi is None else mpi.Get_rank()
        self.failed = None                     # the error agreed last
        self.told = None                       # ... and this rank's own part of it
        self.all_failed_alike = False          # the last agreement: same error everywhere
        self.peers_leaving = False             # ... and some rank is exiting

    @classmethod
    def of(cls, comm):
        """``comm`` as a Comm: the same object if it is one; an mpi4py communicator
        or a PETSc one (``tompi4py``) wrapped; None for one process."""
        if isinstance(comm, cls):
            return comm
        if comm is None:
            return cls(None)
        if hasattr(comm, "tompi4py"):
            comm = comm.tompi4py()
        if not (callable(getattr(comm, "Get_size", None))
                and callable(getattr(comm, "allgather", None))):
            raise TypeError(f"comm must be an mpi4py or PETSc communicator, a "
                            f"hsspetsc Comm or None; got {type(comm).__name__}.")
        return cls(comm)

    # ------------------------------------------------------------ agreement
    def gather(self, value=None, error=None):
        """Collective: ``value`` of every rank (a list); or, if any rank passes an
        ``error``, the first failing rank's error raised on every rank as a
        :class:`CollectiveError` (``error`` itself where every rank passed the same
        one, and with one process)."""
        if self.size == 1:
            self.all_failed_alike = error is not None
            if error is not None:
                self.failed = self.told = error
                raise error         # nobody to tell: the error as it is
            return [value]
        msg = None if error is None else f"{type(error).__name__}: {error}"
        got = self.mpi.allgather((msg, value))
        bad = [(r, m) for r, (m, _) in enumerate(got) if m is not None]
        self.all_failed_alike = (len(bad) == self.size
                                 and len({m for _, m in bad}) == 1)
        # a rank that failed with SystemExit is leaving: no further collective
        self.peers_leaving = any(m.startswith("SystemExit") for _, m in bad)
        if bad:
            self.told = error
        if self.all_failed_alike:
            self.failed = error
            raise error
        if bad:
            r, m = bad[0]
            self.failed = CollectiveError(f"rank {r} of {self.size} failed: {m}")
            raise self.failed from error
        return [v for _, v in got]

    def agree(self, error=None):
        """Collective: raise the first failing rank's error on every rank."""
        self.gather(None, error)

    def run(self, fn, *args, **kwargs):
        """``fn(*args)``: a step of a command, or this rank's part of a collective.
        An exception is agreed with the other ranks (which meet it at their next
        agreement) unless it already was, and raised on every rank. A
        KeyboardInterrupt is not agreed (it reaches every rank)."""
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - agreed, raised on every rank
            self._raise_agreed(exc)

    def together(self, fn, *args, **kwargs):
        """:meth:`run` ``fn`` and agree on its outcome: every rank returns, or every
        rank raises, here (for a step whose callers go on with no collective of
        the package, e.g. a PETSc callback)."""
        out = self.run(fn, *args, **kwargs)
        self.agree()
        return out

    def _raise_agreed(self, exc):
        """Tell the other ranks of this rank's ``exc`` (at the agreement they are in
        or heading to) and raise what :meth:`gather` raises; an error agreed
        already (a CollectiveError, or the one agreed last) is raised as it is. A
        rank that is leaving (SystemExit) still leaves."""
        if isinstance(exc, CollectiveError) or exc is self.failed or exc is self.told:
            self.failed = self.failed if exc is self.told else exc
            raise exc
        try:
            self.agree(exc)
        except CollectiveError:
            if isinstance(exc, SystemExit):
                raise exc from None
            raise
        raise exc                   # not reached: agree raised

    # ---------------------------------------------------------- collectives
    def sum(self, local, *args, out=None):
        """Sum over ranks of ``local(*args)`` (a scalar or ndarray), identical on
        every rank (a reduce to rank 0 and a broadcast: an allreduce may associate
        differently on different ranks). ``local`` may be a value instead of a
        callable; an exception in it is agreed (:meth:`run`). ``out``: a float64
        array of the result's shape to receive the sum (not ``local``'s own buffer;
        one process returns ``local``'s value as it is)."""
        x = self.run(local, *args) if callable(local) else local
        self.agree()
        if self.size == 1:
            return x
        from mpi4py import MPI
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
        out = np.empty_like(arr) if out is None else out
        self.mpi.Reduce(arr, out, op=MPI.SUM, root=0)
        self.mpi.Bcast(out, root=0)
        return float(out) if np.ndim(x) == 0 else out

    def max(self, x):
        """The largest float ``x`` over the ranks (exact: the same on every rank)."""
        return self._extreme(x, "MAX")

    def min(self, x):
        """The smallest float ``x`` over the ranks."""
        return self._extreme(x, "MIN")

    def _extreme(self, x, op):
        self.agree()
        if self.size == 1:
            return float(x)
        from mpi4py import MPI
        return float(self.mpi.allreduce(float(x), op=getattr(MPI, op)))

    def bcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        self.agree()
        return obj if self.size == 1 else self.mpi.bcast(obj, root=0)

    def allgatherv(self, rows, counts, dtype=np.float64):
        """Every rank's 1-D ``rows`` (``counts[r]`` entries on rank r) concatenated
        in rank order, on every rank."""
        rows = np.ascontiguousarray(rows, dtype=dtype)
        self.agree()
        if self.size == 1:
            return rows.copy()
        from mpi4py import MPI
        counts = np.asarray(counts, np.int64)
        full = np.empty(int(counts.sum()), dtype=dtype)
        displ = exclusive_cumsum(counts)
        mpitype = MPI.DOUBLE if np.dtype(dtype) == np.float64 else MPI.INT64_T
        self.mpi.Allgatherv(rows, [full, (counts, displ), mpitype])
        return full

    def ranks_on_node(self):
        """How many ranks of this communicator share this rank's node."""
        self.agree()
        if self.size == 1:
            return 1
        from mpi4py import MPI
        node = self.mpi.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return node.Get_size()
        finally:
            node.Free()

    def barrier(self):
        if self.size > 1:
            self.mpi.Barrier()

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

    def same_ranks(self, other):
        """Whether ``other`` (a Comm, mpi4py/PETSc communicator or None) holds the
        same ranks in the same order."""
        other = Comm.of(other)
        if self.size == 1 or other.size == 1:
            return self.size == other.size
        from mpi4py import MPI
        return MPI.Comm.Compare(self.mpi, other.mpi) in (MPI.IDENT, MPI.CONGRUENT)


__all__ = ["Comm", "CollectiveError"]
