"""Python shell Mat for shift*I + H~."""
from petsc4py import PETSc

from ..matrix.distributed import DistributedHSSMatrix
from ..matrix.hss import HSSMatrix
from ..util.validation import add_to_diagonal
from ._comm import collective, register_exit_cleanup, release_refs
from ._dist import Scatters, check_comm, memory_lines
from ._vec import Gatherer, check_vec, set_local


class HSSMatContext:
    """Context of a python-type Mat (petsc4py Mat protocol): y = (shift I + H~) x.

    Attributes: ``H`` (the HSSMatrix, or a DistributedHSSMatrix: then Vecs are
    scattered to its tree-order rows, nothing is gathered), ``shift``, ``source``
    (optional: the matrix source, so that a preconditioner may compress it again
    with its own options), ``native`` (distributed only: Vecs in tree order).
    """

    def __init__(self, H, shift=0.0, source=None, native=False):
        if not isinstance(H, (HSSMatrix, DistributedHSSMatrix)):
            raise TypeError(f"HSSMatContext needs an HSSMatrix or a DistributedHSSMatrix. "
                            f"Got {type(H).__name__}.")
        register_exit_cleanup()
        self.H = H
        self.n = H.n
        self.shift = float(shift)
        self.source = source
        self.distributed = isinstance(H, DistributedHSSMatrix)
        self.native = bool(native)
        self._gather = Gatherer()
        self._scatters = Scatters(H, self.native) if self.distributed else None
        self._diag = None

    # -- protocol -----------------------------------------------------------
    @release_refs
    def mult(self, mat, x, y):
        if self.distributed:
            sx = self._scatters.get(x, "HSS Mat mult (x)")
            xt = sx.to_tree(x)
            yt = self.H.matvec(xt)
            if self.shift:
                yt += self.shift * xt
            self._scatters.get(y, "HSS Mat mult (y)").from_tree(yt, y)
            return
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
        if self.distributed:
            self._scatters.get(d, "HSS Mat getDiagonal").from_tree(
                self.H.diagonal() + self.shift, d)
            return
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
        if self.distributed:
            for line in [repr(self.H)] + memory_lines(self.H):
                viewer.printfASCII("  " + line + "\n")
            return
        for line in repr(self.H).splitlines():
            viewer.printfASCII("  " + line + "\n")

    def destroy(self, mat):
        self._gather.destroy()
        if self._scatters is not None:
            self._scatters.destroy()

    # -- helpers ------------------------------------------------------------
    def diagonal(self):
        """Diagonal of shift I + H~ (H~'s diagonal is exact: leaf blocks are kept);
        for a distributed H~, this rank's rows in tree order."""
        return self.H.diagonal() + self.shift

    def entries(self, I, J):
        """Entries of shift I + K read from the source (if one was given)."""
        if self.source is None:
            raise ValueError("this HSS Mat was created without a source")
        out = self.source.entries(I, J)
        return add_to_diagonal(out, I, J, self.shift) if self.shift else out


def as_petsc_mat(H, comm=None, shift=0.0, source=None, native=False):
    """A python-type PETSc Mat applying ``shift*I + H~`` in user index order.

    Parameters
    ----------
    H : HSSMatrix or DistributedHSSMatrix
        An HSSMatrix is replicated on every rank of ``comm`` (each mult gathers x).
        A DistributedHSSMatrix (``hsspetsc.compress(..., comm=...)``) stays
        distributed: each mult scatters x from PETSc's layout to the matrix's rows
        and back, nothing of length N is gathered; its communicator must be
        ``comm``'s.
    comm : PETSc communicator
        Default ``PETSc.COMM_WORLD``; rows are split with PETSc's default layout.
    native : bool
        Distributed only: the Mat's layout is the matrix's own (rank p holds tree
        positions ``H.offsets[p]:H.offsets[p+1]``; Vec entry t is original index
        ``perm[t]``, this rank's ``H.local_indices``); no scatter at all.
    shift : float
        Added to the diagonal.
    source : matrix source of H, optional
        Lets HSSPC compress again with its own options (e.g. budget 0 for the
        preconditioner of a budget > 0 operator).
    """
    comm = PETSc.COMM_WORLD if comm is None else comm

    def make():
        if not isinstance(H, (HSSMatrix, DistributedHSSMatrix)):
            raise TypeError(f"as_petsc_mat needs an HSSMatrix or a DistributedHSSMatrix. "
                            f"Got {type(H).__name__}.")
        if source is not None and getattr(source, "n", H.n) != H.n:
            raise ValueError(f"as_petsc_mat: the source has N = {source.n}, H has N = {H.n}.")
        if isinstance(H, DistributedHSSMatrix):
            check_comm(H, comm, "as_petsc_mat")
        elif native:
            raise ValueError("as_petsc_mat: native=True needs a DistributedHSSMatrix "
                             "(a replicated HSSMatrix uses PETSc's layout).")
        return HSSMatContext(H, shift=shift, source=source, native=native)

    ctx = collective(comm, make)
    n = H.n
    local = ctx.H.n_local if native else PETSc.DECIDE
    mat = PETSc.Mat().createPython(((local, n), (local, n)), ctx, comm=comm)
    mat.setUp()
    return mat
