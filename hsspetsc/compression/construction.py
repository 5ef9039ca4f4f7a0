"""The state of one compression, handed from step to step.

A :class:`Construction` is made once by a front door (:func:`hsspetsc.compress` and
:func:`hsspetsc.compress_sketch`, each also with ``comm=``, and
:func:`hsspetsc.refresh`) and passed to every step of the build and to the contract
(:mod:`hsspetsc.compression.contract`): the source and its diagonal, the checked parameters, the
path (entries or products), the thread count, the one
:class:`~hsspetsc.util.blocks.BlockReader` that counts what is read, the phase clock
(:class:`Phases`) and the command's communicator.
"""
import time
from dataclasses import dataclass

from ..mpi.comm import Comm
from ..util.blocks import BlockReader


class Phases:
    """Wall time per phase, and a progress line per phase when ``verbose`` (True),
    or, by default (None), once the compression has run for AUTO_PROGRESS_S."""

    AUTO_PROGRESS_S = 10.0

    def __init__(self, verbose, n, work):
        self.verbose = verbose
        self.n = n
        self.work = work              # callable: entries-equivalents read so far
        self.times = {}
        self._t0 = None
        self._begin = time.perf_counter()

    def start(self):
        self._t0 = time.perf_counter()

    def done(self, name):
        t = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + t - self._t0
        self._t0 = t
        if self.verbose or (self.verbose is None
                            and t - self._begin > self.AUTO_PROGRESS_S):
            print(f"[hsspetsc] {name:<12} {self.times[name]:8.3f} s  (work so far "
                  f"{100 * self.work() / self.n ** 2:.2f}% of N^2)", flush=True)

    def total(self):
        """Close the clock: ``times["total"]`` is the sum of the phases."""
        self.times["total"] = sum(v for k, v in self.times.items() if k != "total")
        return self.times["total"]


@dataclass
class Construction:
    """One compression's source, parameters, reader, clock and communicator.

    ``path``: "entries" (:func:`hsspetsc.compress`) or "sketch"
    (:func:`hsspetsc.compress_sketch`); ``where``: the front door's name for
    messages; ``comm``: a :class:`~hsspetsc.mpi.comm.Comm` (one process: size
    1)."""

    source: object
    diagonal: object
    params: dict
    path: str
    n_threads: int
    reader: BlockReader
    phases: Phases
    comm: Comm
    where: str

    @classmethod
    def start(cls, source, diagonal, params, path, n_threads, reader, verbose,
              comm=None, where=None):
        """The context of a compression that starts now (its clock running); the
        progress line is printed by rank 0 only."""
        comm = Comm.of(comm)
        n = source.n
        phases = Phases(verbose if comm.rank == 0 else False, n,
                        lambda: reader.count + reader.products * n)
        phases.start()
        where = where or ("compress" if path == "entries" else "compress_sketch")
        return cls(source, diagonal, params, path, n_threads, reader, phases, comm,
                   where)

    @property
    def n(self):
        return self.source.n
