"""Data-parallel problem: samples sharded over MPI ranks, parameters replicated.

Loss, gradient, Gauss-Newton products, entries and diagonal are sums over samples:
each rank sums over its shard and the sums are combined by a reduce to rank 0 and a
broadcast, so every rank holds bitwise the same numbers (an allreduce may associate
differently on different ranks). With one rank nothing is communicated.
"""
import hashlib

import numpy as np

from ..mlp.gauss_newton import GaussNewton
from ..mpi.comm import CollectiveError, Comm  # noqa: F401 - CollectiveError: re-exported
from ..sources import Source
from ..util.blocks import exclusive_cumsum, fill_with_evaluator
from ..util.threads import effective_n_threads, threads_per_rank
from ..util.validation import add_to_diagonal


def _digest(model, X, Y):
    """A checksum of what every rank must hold the same: the widths, activations,
    loss, parameters and data."""
    h = hashlib.sha256()
    h.update(repr((list(model.widths), list(model.activations), model.loss_name)).encode())
    for a in (model.params, X, Y):
        a = np.ascontiguousarray(a)
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ShardedProblem:
    """An MLP and its data, the samples split over the ranks of ``comm`` (mpi4py).

    Rank r keeps the contiguous block r of the samples (the same data order on any
    number of ranks, so 1 and P ranks compute the same sums up to round-off). With
    more than one rank and OMP_NUM_THREADS unset, each rank's threads are set to
    cores // ranks on its node (:func:`hsspetsc.util.threads.threads_per_rank`).
    ``X``/``Y`` are the full data on every rank (each rank slices its shard).
    """

    def __init__(self, model, X, Y, comm=None):
        X, Y = model.check_data(X, Y, "ShardedProblem")
        self.model = model
        self.comm = Comm.of(comm)
        self.n_total = X.shape[0]
        if self.n_total < self.comm.size:
            raise ValueError(f"{self.n_total} samples cannot be split over "
                             f"{self.comm.size} ranks")
        self.comm.check_same(_digest(model, X, Y), "the network, its parameters and the "
                             "data (started with different arguments?)")
        if self.comm.size > 1:
            # ranks x threads <= cores unless the user set OMP_NUM_THREADS (its
            # collectives come after check_same's agreement: no rank has failed)
            threads_per_rank(self.comm)
        bounds = np.linspace(0, self.n_total, self.comm.size + 1).round().astype(int)
        lo, hi = bounds[self.comm.rank], bounds[self.comm.rank + 1]
        self.X, self.Y = X[lo:hi], Y[lo:hi]
        self.n_local = hi - lo
        self.shard_start = lo
        self.passes = 0.0          # data passes so far (see training.newton docs)

    def _batch(self, batch):
        """(local X, local Y, samples in all) of a mini-batch (size, step), or of
        every sample for None."""
        if batch is None or int(batch[0]) >= self.n_total:
            return self.X, self.Y, self.n_total
        idx = self.batch_indices(*batch)
        return self.X[idx], self.Y[idx], int(batch[0])

    def loss(self, theta, batch=None):
        """Mean loss over every sample, or over the mini-batch ``batch`` = (size,
        step) of :meth:`batch_indices` (collective)."""
        X, Y, m = self._batch(batch)
        self.passes += 0.5 * m / self.n_total
        return self.comm.sum(
            lambda: self.model.loss(X, Y, theta) * X.shape[0] if X.shape[0] else 0.0) / m

    def loss_grad(self, theta, batch=None):
        """Mean loss and gradient over every sample or the mini-batch ``batch``."""
        X, Y, m = self._batch(batch)
        self.passes += m / self.n_total

        def local():
            if not X.shape[0]:
                return np.zeros(1 + self.model.n_params)
            loss, g = self.model.loss_grad(X, Y, theta)
            return np.r_[loss * X.shape[0], g * X.shape[0]]
        tot = self.comm.sum(local)
        return float(tot[0]) / m, tot[1:] / m

    def batch_indices(self, size, step):
        """This rank's part of the mini-batch of Newton step ``step``: the first
        ``size`` entries of a permutation of all ``n_total`` samples drawn by one
        stream keyed by ``step`` (the same set on any number of ranks), as local
        indices, sorted. A smaller size of the same step is a prefix of the same
        permutation, so the CG sub-batch is a subset of the gradient batch."""
        rng = np.random.default_rng(np.random.SeedSequence([0x6261746368, int(step)]))
        idx = np.sort(rng.permutation(self.n_total)[:int(size)])
        lo = self.shard_start
        return idx[(idx >= lo) & (idx < lo + self.n_local)] - lo

    def curvature_indices(self, samples, seed):
        """This rank's part of a curvature mini-batch: ``samples`` indices drawn
        without replacement from all ``n_total`` samples by one stream keyed by
        ``seed`` (the same set on any number of ranks), as local indices, sorted."""
        rng = np.random.default_rng(np.random.SeedSequence([0x6375727600, int(seed)]))
        idx = np.sort(rng.choice(self.n_total, int(samples), replace=False))
        lo = self.shard_start
        return idx[(idx >= lo) & (idx < lo + self.n_local)] - lo

    def gauss_newton(self, theta, damping=0.0, samples=None, seed=0, batch=None,
                     projections=None):
        """Gauss-Newton matrix at ``theta`` over all samples, or over a curvature
        mini-batch of ``samples`` of them (drawn from one stream keyed by ``seed``:
        the same mini-batch on any number of ranks), or over the Newton mini-batch
        ``batch`` = (size, step) of :meth:`batch_indices`; entries, diagonal and
        products then all come from that mini-batch. ``projections``: each
        sample's curvature by that many projections keyed by its global index
        (:class:`~hsspetsc.mlp.GaussNewton`)."""
        m = batch[0] if batch is not None else samples
        self.passes += 1.0 if m is None else min(m / self.n_total, 1.0)
        return DistributedGN(self, theta, damping, samples, seed, batch, projections)


class DistributedGN(Source):
    """Gauss-Newton matrix over all ranks' samples (or a mini-batch of them, see
    :meth:`ShardedProblem.gauss_newton`) plus ``damping`` * I; a source (entries,
    diagonal and products are collective: every rank must call them in step). A
    rank whose share of the mini-batch is empty contributes zeros."""

    def __init__(self, problem, theta, damping=0.0, samples=None, seed=0, batch=None,
                 projections=None):
        self.problem = problem
        self.projections = projections
        self.n = problem.model.n_params
        self.damping = float(damping)
        if batch is not None and batch[0] < problem.n_total:
            local_idx = problem.batch_indices(*batch)
            m_total = int(batch[0])
        elif samples is not None and samples < problem.n_total:
            local_idx = problem.curvature_indices(samples, seed)
            m_total = int(samples)
        else:
            local_idx, m_total = None, problem.n_total
        self.samples = m_total
        comm = problem.comm

        def local_gn():
            if local_idx is None:
                X, Y = problem.X, problem.Y
                ids = np.arange(problem.n_local)
            elif local_idx.size:
                X, Y = problem.X[local_idx], problem.Y[local_idx]
                ids = local_idx
            else:
                return None
            return GaussNewton(problem.model, X, Y, params=theta, projections=projections,
                               sample_ids=problem.shard_start + ids)
        self.local = comm.run(local_gn)
        m = 0 if self.local is None else self.local.n_samples
        self._w = m / m_total             # this rank's share of the mean
        self._diag = None

    def _local(self, fn, shape):
        """This rank's weighted contribution (zeros without local samples)."""
        if self.local is None:
            return np.zeros(shape)
        return fn(self.local) * self._w

    @property
    def _pass_share(self):
        return self.samples / self.problem.n_total

    def matvec(self, v):
        self.problem.passes += self._pass_share
        out = self.problem.comm.sum(lambda: self._local(lambda g: g.matvec(v), self.n))
        return out + self.damping * v if self.damping else out

    def matmat(self, V):
        """H V for a block (collective; every rank gets the same sums)."""
        self.problem.passes += float(V.shape[1]) * self._pass_share
        out = self.problem.comm.sum(
            lambda: self._local(lambda g: g.matmat(V), np.shape(V)))
        return out + self.damping * V if self.damping else out

    def neuron_order(self):
        return GaussNewton.neuron_order_of(self.problem.model)

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

        def local():
            part = np.zeros(int((rl * cl).sum()))
            if part.size and self.local is not None:
                fill_with_evaluator(self.local._gn_evaluator(), exclusive_cumsum(rl),
                                    rl, np.concatenate(rows), exclusive_cumsum(cl), cl,
                                    np.concatenate(cols), off, part,
                                    effective_n_threads(self.local.n_threads))
                part *= self._w     # in place: the blocks are the largest buffer
            return part
        total = self.problem.comm.sum(local)
        out = []
        for b, (I, J) in enumerate(blocks):
            blk = total[off[b]:off[b] + rl[b] * cl[b]].reshape(len(I), len(J))
            if self.damping:
                add_to_diagonal(blk, I, J, self.damping)
            out.append(blk)
        return out

    # entries are sums over every rank's samples: calls are collective
    collective = True

    def fill_blocks(self, row_start, row_len, row_idx, col_start, col_len, col_idx,
                    offsets, out):
        """The flat read of :class:`hsspetsc.util.blocks.BlockReader` (collective): the
        blocks' entries, summed over the ranks, written into ``out`` (block b at
        offsets[b], row-major). The same numbers as :meth:`entries_batch` with one
        buffer of the blocks' size fewer (on one rank none besides ``out``)."""
        comm = self.problem.comm

        def local(buf):
            buf[:] = 0.0
            if buf.size and self.local is not None:
                fill_with_evaluator(self.local._gn_evaluator(), row_start, row_len,
                                    row_idx, col_start, col_len, col_idx, offsets, buf,
                                    effective_n_threads(self.local.n_threads))
                buf *= self._w
            return buf
        if comm.size == 1:
            comm.sum(local, out)
        else:
            comm.sum(local, np.empty_like(out), out=out)
        if self.damping:
            for b in np.flatnonzero(row_len * col_len > 0):
                r0, c0, o = row_start[b], col_start[b], offsets[b]
                blk = out[o:o + row_len[b] * col_len[b]].reshape(row_len[b], col_len[b])
                add_to_diagonal(blk, row_idx[r0:r0 + row_len[b]],
                                col_idx[c0:c0 + col_len[b]], self.damping)
        return out

    def entries_batch_own(self, blocks):
        """Each rank asks for its own blocks (collective; the distributed
        construction): this rank's samples' part of every rank's blocks is summed on
        rank 0 and each rank receives exactly its blocks."""
        comm = self.problem.comm
        if comm.size == 1:
            return self.entries_batch(blocks)
        from mpi4py import MPI
        rows = [np.asarray(I, np.int64) for I, _ in blocks]
        cols = [np.asarray(J, np.int64) for _, J in blocks]
        rl = np.array([r.size for r in rows], np.int64)
        cl = np.array([c.size for c in cols], np.int64)
        cat = lambda a: np.concatenate(a) if a else np.zeros(0, np.int64)  # noqa: E731
        meta = comm.gather((rl, cl, cat(rows), cat(cols)))
        RL = np.concatenate([m[0] for m in meta])
        CL = np.concatenate([m[1] for m in meta])
        R = np.concatenate([m[2] for m in meta]).astype(np.int64)
        C = np.concatenate([m[3] for m in meta]).astype(np.int64)
        counts = np.array([int((m[0] * m[1]).sum()) for m in meta], np.int64)
        off = exclusive_cumsum(RL * CL)

        def local():
            part = np.zeros(int(counts.sum()))
            if part.size and self.local is not None:
                fill_with_evaluator(self.local._gn_evaluator(), exclusive_cumsum(RL), RL,
                                    R, exclusive_cumsum(CL), CL, C, off, part,
                                    effective_n_threads(self.local.n_threads))
                part *= self._w
            return part
        part = comm.run(local)
        comm.agree()            # no rank failed: the reduction can start
        # a reduce to rank 0 and a scatter (not Reduce_scatter, which may add each
        # rank's segment in another order): ranks that ask for the same block (the
        # shared nodes) get the same bits
        total = np.empty_like(part) if comm.rank == 0 else None
        comm.mpi.Reduce(part, total, op=MPI.SUM, root=0)
        mine = np.empty(int(counts[comm.rank]))
        comm.mpi.Scatterv([total, (counts, exclusive_cumsum(counts)), MPI.DOUBLE]
                          if comm.rank == 0 else None, mine, root=0)
        out, o = [], 0
        for I, J, a, b in zip(rows, cols, rl, cl):
            blk = mine[o:o + a * b].reshape(a, b)
            o += a * b
            if self.damping:
                add_to_diagonal(blk, I, J, self.damping)
            out.append(blk)
        return out

    def diagonal(self):
        """The exact diagonal over the samples (collective; computed on first use)."""
        if self._diag is None:
            self._diag = self.problem.comm.sum(
                lambda: self._local(lambda g: g.diagonal(), self.n))
        return self._diag + self.damping
