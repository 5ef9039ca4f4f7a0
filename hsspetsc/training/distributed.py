"""Data-parallel problem: samples sharded over MPI ranks, parameters replicated.

Loss, gradient, Gauss-Newton products, entries and diagonal are sums over samples:
each rank sums over its shard and the sums are combined by a reduce to rank 0 and a
broadcast, so every rank holds bitwise the same numbers (an allreduce may associate
differently on different ranks). With one rank nothing is communicated.
"""
import numpy as np

from .._blocks import exclusive_cumsum, fill_with_evaluator
from .._threads import effective_n_threads
from .._validation import add_to_diagonal
from ..mlp.gauss_newton import GaussNewton
from ..sources import Source


class _Comm:
    """mpi4py communicator or a serial stand-in."""

    def __init__(self, comm=None):
        self.mpi = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.rank = 0 if comm is None else comm.Get_rank()

    def sum(self, x):
        """Sum of ``x`` (scalar or ndarray) over ranks, identical on every rank."""
        if self.size == 1:
            return x
        from mpi4py import MPI
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
        out = np.empty_like(arr)
        self.mpi.Reduce(arr, out, op=MPI.SUM, root=0)
        self.mpi.Bcast(out, root=0)
        return float(out) if np.ndim(x) == 0 else out

    def bcast(self, obj):
        return obj if self.size == 1 else self.mpi.bcast(obj, root=0)

    def check_same(self, arr, what):
        """Raise on every rank if ``arr`` differs between ranks."""
        if self.size == 1:
            return
        ref = self.mpi.bcast(np.asarray(arr) if self.rank == 0 else None, root=0)
        bad = int(not np.array_equal(ref, arr))
        if self.mpi.allreduce(bad):
            raise RuntimeError(f"{what} differs between MPI ranks")


class ShardedProblem:
    """An MLP and its data, the samples split over the ranks of ``comm`` (mpi4py).

    Rank r keeps the contiguous block r of the samples (the same data order on any
    number of ranks, so 1 and P ranks compute the same sums up to round-off).
    ``X``/``Y`` are the full data on every rank (each rank slices its shard).
    """

    def __init__(self, model, X, Y, comm=None):
        X, Y = model.check_data(X, Y, "ShardedProblem")
        self.model = model
        self.comm = _Comm(comm)
        self.n_total = X.shape[0]
        if self.n_total < self.comm.size:
            raise ValueError(f"{self.n_total} samples cannot be split over "
                             f"{self.comm.size} ranks")
        bounds = np.linspace(0, self.n_total, self.comm.size + 1).round().astype(int)
        lo, hi = bounds[self.comm.rank], bounds[self.comm.rank + 1]
        self.X, self.Y = X[lo:hi], Y[lo:hi]
        self.n_local = hi - lo
        self.passes = 0.0          # data passes so far (see training.newton docs)

    def loss(self, theta):
        self.passes += 0.5
        local = self.model.loss(self.X, self.Y, theta) * self.n_local
        return self.comm.sum(local) / self.n_total

    def loss_grad(self, theta):
        self.passes += 1.0
        loss, g = self.model.loss_grad(self.X, self.Y, theta)
        tot = self.comm.sum(np.r_[loss * self.n_local, g * self.n_local])
        return float(tot[0]) / self.n_total, tot[1:] / self.n_total

    def gauss_newton(self, theta, damping=0.0, entry_samples=None, seed=0):
        """Gauss-Newton matrix at ``theta``. ``entry_samples``: total number of
        samples (split over ranks in proportion) used by entries/diagonal; products
        always use all samples."""
        self.passes += 1.0
        return DistributedGN(self, theta, damping, entry_samples, seed)


class DistributedGN(Source):
    """Gauss-Newton matrix over all ranks' samples plus ``damping`` * I; a source
    (entries and diagonal are collective: every rank must call them in step)."""

    def __init__(self, problem, theta, damping=0.0, entry_samples=None, seed=0):
        self.problem = problem
        local_samples = None
        if entry_samples is not None and entry_samples < problem.n_total:
            local_samples = max(1, int(round(entry_samples * problem.n_local / problem.n_total)))
        self.local = GaussNewton(problem.model, problem.X, problem.Y, params=theta,
                                 entry_samples=local_samples, seed=seed + problem.comm.rank)
        m = self.local._m
        # weights: the entries average over the sampled samples of every rank
        self._m_total = problem.comm.sum(float(m))
        self.n = self.local.n
        self.damping = float(damping)
        self._w = problem.n_local / problem.n_total        # products: all samples
        self._we = m / self._m_total                        # entries: sampled ones
        self._diag = problem.comm.sum(self.local.diagonal() * self._we)

    def matvec(self, v):
        self.problem.passes += 1.0
        out = self.problem.comm.sum(self.local.matvec(v) * self._w)
        return out + self.damping * v if self.damping else out

    def matmat(self, V):
        """H V for a block (collective; every rank gets the same sums)."""
        self.problem.passes += float(V.shape[1])
        out = self.problem.comm.sum(self.local.matmat(V) * self._w)
        return out + self.damping * V if self.damping else out

    def neuron_order(self):
        return self.local.neuron_order()

    def _block(self, I, J):
        return self.entries_batch([(I, J)])[0]

    def entries_batch(self, blocks):
        """Many blocks: one parallel evaluation of this rank's part, one reduction
        over the ranks (collective)."""
        rows = [np.asarray(I, np.int64) for I, _ in blocks]
        cols = [np.asarray(J, np.int64) for _, J in blocks]
        rl = np.array([r.size for r in rows], np.int64)
        cl = np.array([c.size for c in cols], np.int64)
        off = exclusive_cumsum(rl * cl)
        local = np.empty(int((rl * cl).sum()))
        if local.size:
            fill_with_evaluator(self.local._gn_evaluator(), exclusive_cumsum(rl),
                                rl, np.concatenate(rows), exclusive_cumsum(cl), cl,
                                np.concatenate(cols), off, local,
                                effective_n_threads(self.local.n_threads))
        total = self.problem.comm.sum(local * self._we)
        out = []
        for b, (I, J) in enumerate(blocks):
            blk = total[off[b]:off[b] + rl[b] * cl[b]].reshape(len(I), len(J))
            if self.damping:
                add_to_diagonal(blk, I, J, self.damping)
            out.append(blk)
        return out

    def diagonal(self):
        return self._diag + self.damping
