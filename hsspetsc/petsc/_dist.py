"""PETSc Vecs and a distributed HSS matrix: one scatter between the user's order
(PETSc's default layout) and the matrix's tree order (rank p: rows
``H.offsets[p]:H.offsets[p+1]``), and the python Mat of shift*I + H~.

Nothing is gathered: a Vec in user order is scattered to a Vec in tree order whose
local part is this rank's rows of the matrix, and back. With ``native=True`` the
Mat's Vecs are in tree order already (global index t = tree position t; the user
permutes once with ``H.local_indices``) and no scatter is made.
"""
import numpy as np
from petsc4py import PETSc


def check_comm(H, comm, where):
    """The matrix's communicator and the PETSc one must hold the same ranks in the
    same order."""
    if not H.comm.same_ranks(comm):
        raise ValueError(f"{where}: the matrix was built on a communicator of "
                         f"{H.size} rank(s) that differs from the PETSc communicator "
                         f"({comm.getSize()} rank(s), or other ranks/order); build and "
                         f"use it on the same one.")


class TreeScatter:
    """User order <-> this rank's tree-order rows of ``H``, for Vecs of one layout."""

    def __init__(self, H, template, native=False):
        self.H = H
        self.native = native
        comm = template.getComm()
        lo, hi = int(H.offsets[H.rank_id]), int(H.offsets[H.rank_id + 1])
        self.tree = PETSc.Vec().createMPI((hi - lo, H.n), comm=comm)
        self.key = (template.getSizes(), template.getOwnershipRange())
        self.scatter = None
        if not native:
            src = PETSc.IS().createGeneral(H.local_indices.astype(PETSc.IntType), comm=comm)
            dst = PETSc.IS().createStride(hi - lo, first=lo, step=1, comm=comm)
            self.scatter = PETSc.Scatter().create(template, src, self.tree, dst)
            src.destroy()
            dst.destroy()

    def to_tree(self, x):
        """This rank's rows of x, in tree order (a numpy copy)."""
        if self.native:
            return x.getArray(readonly=True).copy()
        self.scatter.scatter(x, self.tree, addv=PETSc.InsertMode.INSERT,
                             mode=PETSc.ScatterMode.FORWARD)
        return self.tree.getArray(readonly=True).copy()

    def from_tree(self, rows, y):
        """Write this rank's tree-order rows into y (user order)."""
        if self.native:
            y.setArray(np.ascontiguousarray(rows))
            return
        self.tree.setArray(np.ascontiguousarray(rows))
        self.scatter.scatter(self.tree, y, addv=PETSc.InsertMode.INSERT,
                             mode=PETSc.ScatterMode.REVERSE)

    def destroy(self):
        if self.scatter is not None:
            self.scatter.destroy()
        self.tree.destroy()
        self.scatter = None


class Scatters:
    """One TreeScatter per Vec layout met (usually one), made on first use."""

    def __init__(self, H, native=False):
        self.H, self.native, self._s = H, native, None

    def get(self, v, where):
        """The scatter for v's layout (collective: a bad layout on one rank raises
        on every rank)."""
        n_local = v.getLocalSize()
        err = None
        if v.getSize() != self.H.n:
            err = ValueError(f"{where}: Vec of global size {v.getSize()} for a matrix of "
                             f"order {self.H.n}.")
        elif self.native and n_local != self.H.n_local:
            err = ValueError(f"{where}: a native (tree-order) Vec must have "
                             f"{self.H.n_local} local rows on rank {self.H.rank_id}; got "
                             f"{n_local}. Create Vecs with the Mat's createVecs().")
        key = (v.getSizes(), v.getOwnershipRange())
        changed = self._s is None or self._s.key != key
        # (re)building the scatter is collective: every rank does it if any must
        if any(self.H.comm.gather(changed, err)):
            if self._s is not None:
                self._s.destroy()
            self._s = TreeScatter(self.H, v, self.native)
        return self._s

    def destroy(self):
        if self._s is not None:
            self._s.destroy()
            self._s = None


def memory_lines(H, F=None):
    """Per-rank memory of a distributed H~ (and its factorization), for -ksp_view.
    Collective."""
    s = H.stats()
    fb = H.comm.gather(0 if F is None else F.nbytes)
    lines = [f"distributed over {H.size} rank(s): stored bytes per rank (H~"
             + (", factorization)" if F is not None else ")")]
    for r, b in enumerate(s["per_rank_stored_bytes"]):
        lines.append(f"  rank {r}: {b / 1e6:.2f} MB" + (f", {fb[r] / 1e6:.2f} MB"
                                                         if F is not None else ""))
    lines.append(f"  total {s['total_stored_bytes'] / 1e6:.2f} MB; per matvec and "
                 f"right-hand side {s['comm_model']['matvec_bytes_per_rhs']} bytes and "
                 f"{s['comm_model']['matvec_messages']} messages on rank {H.rank_id}")
    return lines


class ReplicatedRows:
    """For a PC on PETSc.COMM_SELF whose Vecs hold every entry on every rank (the
    data-parallel trainer), with a DistributedHSSMatrix over the ranks: each rank
    takes its rows of x (no message), the solve runs over the ranks, and the rows
    of all ranks are gathered into y (one allgather per apply: the replicated
    vectors need every entry; the matrix itself stays distributed)."""

    def __init__(self, H):
        self.H = H
        counts = np.diff(H.offsets)
        self._counts = counts
        self._perm = H.comm.allgatherv(H.local_indices, counts, np.int64)

    def get(self, v, where):
        err = None
        if v.getSize() != self.H.n or v.getLocalSize() != self.H.n:
            err = ValueError(f"{where}: expected a sequential Vec of size {self.H.n} on "
                             f"every rank; got local {v.getLocalSize()} of "
                             f"{v.getSize()}.")
        self.H.comm.agree(err)
        return self

    def to_tree(self, x):
        return x.getArray(readonly=True)[self.H.local_indices]

    def from_tree(self, rows, y):
        H = self.H
        full = H.comm.allgatherv(rows, self._counts)
        out = np.empty(H.n)
        out[self._perm] = full
        y.setArray(out)

    def destroy(self):
        pass


__all__ = ["TreeScatter", "Scatters", "ReplicatedRows", "check_comm", "memory_lines"]
