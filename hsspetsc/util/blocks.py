"""Reading blocks of a source during construction: one batched call per round.

Every phase of the construction asks for many blocks K[rows_b][:, cols_b] at once
(the sampled blocks of a tree level, the leaf blocks, the couplings). A block list
is flat: block b has rows ``row_idx[row_start[b]:][:row_len[b]]`` and columns
``col_idx[col_start[b]:][:col_len[b]]`` (original indices), and its values land
row-major in one float64 buffer at ``offsets[b]``.

- A source with a nogil evaluator (``Source.evaluator()``: kernels, dense arrays,
  Gauss-Newton) is evaluated in one Cython ``prange`` over (block, row range)
  tasks, without the GIL.
- Any other source gets one ``entries_batch(blocks)`` call per round (a list of
  (I, J) pairs; the default loops over ``entries``), so Python is entered once per
  round, not once per node.
:class:`BlockReader` counts what it reads (the "entries evaluated" figure).
"""
import numpy as np

from ..kernels.entries import fill_blocks
from .threads import effective_n_threads

TASK_ENTRIES = 65536      # about 512 KB of output per parallel task
COL_TILE = 256            # column tile of wide blocks


def exclusive_cumsum(sizes):
    """[0, s0, s0 + s1, ...] without the total (int64): where each item starts."""
    out = np.zeros(len(sizes), dtype=np.int64)
    if len(sizes) > 1:
        np.cumsum(sizes[:-1], out=out[1:])
    return out


def pointers(sizes):
    """[0, s0, s0 + s1, ..., total] (int64): item i is [p[i], p[i + 1]) (CSR)."""
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def ranges(starts, lengths):
    """Concatenation of arange(s, s + l) for every (s, l) (vectorized, int64)."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    step = np.ones(total, dtype=np.int64)
    first = exclusive_cumsum(lengths)
    step[0] = starts[0]
    step[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(step)


def fill_tasks(row_len, col_len):
    """(block, first row, end row, first column, end column) tasks of about
    TASK_ENTRIES entries each. Blocks wider than 2 COL_TILE columns are cut into
    column tiles too, so every task is a nearly square tile (an evaluator that
    forms its tile by a GEMM, e.g. a kernel of high-dimensional points, then
    gathers each point once per tile). The tiles depend on the block shapes only,
    never on the thread count, so the values are the same on any thread count."""
    row_len = np.asarray(row_len, dtype=np.int64)
    col_len = np.asarray(col_len, dtype=np.int64)
    live = np.flatnonzero((row_len > 0) & (col_len > 0))
    nc = col_len[live]
    tile_c = np.where(nc > 2 * COL_TILE, COL_TILE, nc)
    n_ct = -(-nc // tile_c)                         # column tiles per block
    per = np.maximum(1, TASK_ENTRIES // tile_c)     # rows per task
    n_rt = -(-row_len[live] // per)                 # row tiles per block
    n_tasks = n_rt * n_ct
    blk = np.repeat(live, n_tasks)
    k = np.arange(blk.size, dtype=np.int64) - np.repeat(exclusive_cumsum(n_tasks), n_tasks)
    kr, kc = k // np.repeat(n_ct, n_tasks), k % np.repeat(n_ct, n_tasks)
    r0 = kr * np.repeat(per, n_tasks)
    r1 = np.minimum(r0 + np.repeat(per, n_tasks), row_len[blk])
    c0 = kc * np.repeat(tile_c, n_tasks)
    c1 = np.minimum(c0 + np.repeat(tile_c, n_tasks), col_len[blk])
    return blk.astype(np.int64), r0, r1, c0, c1


def fill_with_evaluator(ev, row_start, row_len, row_idx, col_start, col_len, col_idx,
                        offsets, out, n_threads):
    """Evaluate a block list with a nogil evaluator into ``out`` (in parallel)."""
    blk, r0, r1, c0, c1 = fill_tasks(row_len, col_len)
    fill_blocks(ev, _i64(row_start), _i64(row_idx), _i64(col_start), _i64(col_len),
                _i64(col_idx), _i64(offsets), blk, r0, r1, c0, c1, out, n_threads)


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


class WorkCapReached(Exception):
    """A read would take the reader past its limit (caught by the front doors,
    which say what it means: :class:`IncompressibleError`)."""

    def __init__(self, count, request, limit):
        super().__init__(count, request, limit)
        self.count, self.request, self.limit = count, request, limit


class IncompressibleError(RuntimeError):
    """The compression would read more entries than the dense matrix has (N^2):
    at this tolerance H~ costs more than K itself. Raised before the read that
    would cross N^2; the message gives the figures and the remedies (a larger
    tol, a ``shift``, or the dense matrix: ``hsspetsc.solve(..., method="dense")``).
    ``entries_read``, ``n`` and ``phase`` hold the figures."""

    def __init__(self, message, entries_read=0, n=0, phase=""):
        super().__init__(message)
        self.entries_read, self.n, self.phase = entries_read, n, phase


class BlockReader:
    """Reads block lists of ``source`` (see the module docstring) and counts entries.

    ``evaluator``: a nogil evaluator to use instead of the source's own (the
    geometric metric reads squared distances of points this way)."""

    def __init__(self, source=None, n_threads=None, evaluator=None, limit=None):
        self.source = source
        self.limit = limit      # entries the reader may read in all (None: no cap)
        self.evaluator = evaluator if evaluator is not None else (
            source.evaluator() if source is not None else None)
        self.n_threads = effective_n_threads(n_threads)
        self.count = 0          # entries read
        self.calls = 0          # rounds (batched reads)
        self.products = 0       # columns of K @ V taken from the source (sketch, probes)

    def read(self, row_start, row_len, row_idx, col_start, col_len, col_idx):
        """Return (data, offsets): block b is data[offsets[b]:][:row_len[b] * col_len[b]]
        reshaped (row_len[b], col_len[b])."""
        row_len = _i64(row_len)
        col_len = _i64(col_len)
        sizes = row_len * col_len
        offsets = exclusive_cumsum(sizes)
        out = np.empty(int(sizes.sum()))
        # a collective source is called in step on every rank, even with nothing to read
        if out.size == 0 and not getattr(self.source, "collective", False):
            return out, offsets
        if self.limit is not None and self.count + out.size > self.limit:
            raise WorkCapReached(self.count, out.size, self.limit)
        self.count += out.size
        self.calls += 1
        if self.evaluator is not None:
            fill_with_evaluator(self.evaluator, row_start, row_len, row_idx, col_start,
                                col_len, col_idx, offsets, out, self.n_threads)
            _check_finite(out)
            return out, offsets
        row_start, col_start = _i64(row_start), _i64(col_start)
        fill = getattr(self.source, "fill_blocks", None)
        if fill is not None:        # the source writes into out: no second buffer
            fill(row_start, row_len, _i64(row_idx), col_start, col_len, _i64(col_idx),
                 offsets, out)
            _check_finite(out)
            return out, offsets
        live = np.flatnonzero(sizes > 0)
        blocks = [(row_idx[row_start[b]:row_start[b] + row_len[b]],
                   col_idx[col_start[b]:col_start[b] + col_len[b]]) for b in live]
        values = self.source.entries_batch(blocks)
        if len(values) != len(blocks):
            raise ValueError(f"entries_batch returned {len(values)} blocks for "
                             f"{len(blocks)} requested.")
        for b, v in zip(live, values):
            v = np.asarray(v, dtype=np.float64)
            if v.shape != (row_len[b], col_len[b]):
                raise ValueError(f"entries_batch returned a block of shape {v.shape}, "
                                 f"expected {(int(row_len[b]), int(col_len[b]))}.")
            out[offsets[b]:offsets[b] + sizes[b]] = v.ravel()
        _check_finite(out)
        return out, offsets


def _check_finite(out):
    if not np.isfinite(out).all():
        raise ValueError("The source returned NaN or Inf entries; an SPD matrix has "
                         "finite entries: check the source (e.g. a kernel that overflows).")


def chunks(sizes, limit):
    """Split range(len(sizes)) into consecutive (start, end) runs whose sizes add up
    to at most ``limit`` (a run holds at least one item)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return []
    cum = np.cumsum(sizes)
    out, start, base = [], 0, 0
    while start < sizes.size:
        end = int(np.searchsorted(cum, base + limit, side="right"))
        end = max(end, start + 1)
        out.append((start, end))
        base = int(cum[end - 1])
        start = end
    return out
