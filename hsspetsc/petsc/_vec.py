"""Gather a distributed PETSc Vec on every rank, and write back the local rows."""
import numpy as np
from petsc4py import PETSc


class Gatherer:
    """Cached to-all scatter for one Vec layout."""

    def __init__(self):
        self._key = None
        self._scatter = None
        self._seq = None

    def full(self, x):
        """The whole of ``x`` as a numpy array (a copy), on every rank."""
        if x.getComm().getSize() == 1:
            return x.getArray(readonly=True).copy()
        key = (x.getSizes(), x.getOwnershipRange())
        if key != self._key:
            if self._scatter is not None:
                self._scatter.destroy()
                self._seq.destroy()
            self._scatter, self._seq = PETSc.Scatter.toAll(x)
            self._key = key
        self._scatter.scatter(x, self._seq, addv=PETSc.InsertMode.INSERT,
                              mode=PETSc.ScatterMode.FORWARD)
        return self._seq.getArray(readonly=True).copy()

    def destroy(self):
        if self._scatter is not None:
            self._scatter.destroy()
            self._seq.destroy()
        self._scatter = self._seq = self._key = None


def set_local(y, full):
    """Write rows ``full[rstart:rend]`` into the local part of ``y``."""
    rs, re = y.getOwnershipRange()
    y.setArray(np.ascontiguousarray(full[rs:re]))


def check_vec(v, n, what):
    if v.getSize() != n:
        raise ValueError(f"{what}: Vec of global size {v.getSize()} for a matrix of "
                         f"order {n}.")
