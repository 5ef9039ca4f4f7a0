"""Python shell Mat for shift*I + H~."""
from petsc4py import PETSc

from .._validation import add_to_diagonal
from ..hss import HSSMatrix
from ._comm import collective, register_exit_cleanup, release_refs
from ._vec import Gatherer, check_vec, set_local


class HSSMatContext:
    """Context of a python-type Mat (petsc4py Mat protocol): y = (shift I + H~) x.

    Attributes: ``H`` (the HSSMatrix), ``shift``, ``source`` (optional: the matrix
    source, so that a preconditioner may compress it again with its own options).
    """

    def __init__(self, H, shift=0.0, source=None):
        if not isinstance(H, HSSMatrix):
            raise TypeError(f"HSSMatContext needs an HSSMatrix. Got {type(H).__name__}.")
        register_exit_cleanup()
        self.H = H
        self.n = H.n
        self.shift = float(shift)
        self.source = source
        self._gather = Gatherer()
        self._diag = None

    # -- protocol -----------------------------------------------------------
    @release_refs
    def mult(self, mat, x, y):
        check_vec(x, self.n, "HSS Mat mult (x)")
        check_vec(y, self.n, "HSS Mat mult (y)")
        xf = self._gather.full(x)
        yf = self.H.matvec(xf)
        if self.shift:
            yf += self.shift * xf
        set_local(y, yf)

    def multTranspose(self, mat, x, y):   # symmetric
        self.mult(mat, x, y)

    @release_refs
    def getDiagonal(self, mat, d):
        check_vec(d, self.n, "HSS Mat getDiagonal")
        if self._diag is None:
            self._diag = self.diagonal()
        set_local(d, self._diag)

    def createVecs(self, mat):
        comm = mat.getComm()
        (rloc, rglob), (cloc, cglob) = mat.getSizes()
        right = PETSc.Vec().createMPI((cloc, cglob), comm=comm)
        left = PETSc.Vec().createMPI((rloc, rglob), comm=comm)
        return right, left

    def view(self, mat, viewer):
        if viewer.getType() != PETSc.Viewer.Type.ASCII:
            return
        viewer.printfASCII(f"hsspetsc HSSMatrix operator: shift*I + H~, shift = {self.shift:g}\n")
        for line in repr(self.H).splitlines():
            viewer.printfASCII("  " + line + "\n")

    def destroy(self, mat):
        self._gather.destroy()

    # -- helpers ------------------------------------------------------------
    def diagonal(self):
        """Diagonal of shift I + H~ (H~'s diagonal is exact: leaf blocks are kept)."""
        return self.H.diagonal() + self.shift

    def entries(self, I, J):
        """Entries of shift I + K read from the source (if one was given)."""
        if self.source is None:
            raise ValueError("this HSS Mat was created without a source")
        out = self.source.entries(I, J)
        return add_to_diagonal(out, I, J, self.shift) if self.shift else out


def as_petsc_mat(H, comm=None, shift=0.0, source=None):
    """A python-type PETSc Mat applying ``shift*I + H~`` in user index order.

    Parameters
    ----------
    H : HSSMatrix
        Replicated on every rank of ``comm``.
    comm : PETSc communicator
        Default ``PETSc.COMM_WORLD``; rows are split with PETSc's default layout.
    shift : float
        Added to the diagonal.
    source : matrix source of H, optional
        Lets HSSPC compress again with its own options (e.g. budget 0 for the
        preconditioner of a budget > 0 operator).
    """
    comm = PETSc.COMM_WORLD if comm is None else comm

    def make():
        if not isinstance(H, HSSMatrix):
            raise TypeError(f"as_petsc_mat needs an HSSMatrix. Got {type(H).__name__}.")
        if source is not None and getattr(source, "n", H.n) != H.n:
            raise ValueError(f"as_petsc_mat: the source has N = {source.n}, H has N = {H.n}.")
        return HSSMatContext(H, shift=shift, source=source)

    ctx = collective(comm, make)
    n = H.n
    mat = PETSc.Mat().createPython(((PETSc.DECIDE, n), (PETSc.DECIDE, n)), ctx, comm=comm)
    mat.setUp()
    return mat
