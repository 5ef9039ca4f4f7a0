"""Which MPI rank holds which part of the tree, and the swaps along it.

The ranks of a communicator split the cluster tree top-down (see
:class:`Ownership`); one process is the case P = 1, where the one rank owns the whole
tree as its subtree and has no ancestors to share. :class:`Exchange` is the
point-to-point swap with the partner group of one shared node, used by the matvec,
the factorization, the solve and the distributed construction.
"""
import numpy as np

TAG_BASE = {"matvec": 1000, "solve": 3000, "factorize": 5000, "build": 7000}


class Ownership:
    """Which rank owns which subtree (see the module docstring).

    ``group[a]`` = (lo, hi): the ranks below node a, for every shared node and every
    subtree root. ``root_of[p]``: the subtree root of rank p. ``path``: this rank's
    ancestors from the bottom, each as (ancestor, my child, the sibling child,
    the rank I receive from, the ranks I send to)."""

    def __init__(self, node_off, node_size, n_levels, size, rank):
        first_leaf = 2 ** n_levels - 1
        self.size, self.rank = int(size), int(rank)
        self.group = {}
        self.root_of = np.full(self.size, -1, dtype=np.int64)
        stack = [(0, 0, self.size)]
        while stack:
            a, lo, hi = stack.pop()
            self.group[a] = (lo, hi)
            g = hi - lo
            if g == 1:
                self.root_of[lo] = a
                continue
            if a >= first_leaf:
                raise ValueError(
                    f"{self.size} ranks need at least {self.size} leaves: the tree has "
                    f"{first_leaf + 1} (N = {int(node_size[0])}); use a smaller "
                    f"leaf_size or fewer ranks.")
            left = 2 * a + 1
            pl = int(np.floor(g * node_size[left] / node_size[a] + 0.5))
            pl = min(max(pl, 1), g - 1)
            stack.append((left + 1, lo + pl, hi))
            stack.append((left, lo, lo + pl))
        self.sub = int(self.root_of[self.rank])
        self.sub_level = int(np.floor(np.log2(self.sub + 1)))
        self.lo = int(node_off[self.sub])
        self.hi = self.lo + int(node_size[self.sub])
        self.offsets = np.r_[node_off[self.root_of], node_off[0] + node_size[0]].astype(np.int64)
        self.path = []
        a = self.sub
        while a > 0:
            parent = (a - 1) // 2
            sib = a + 1 if a % 2 == 1 else a - 1
            m0, m1 = self.group[a]
            t0, t1 = self.group[sib]
            i = self.rank - m0
            recv = t0 + i % (t1 - t0)
            send = [t0 + j for j in range(t1 - t0) if j % (m1 - m0) == i]
            self.path.append((parent, a, sib, recv, send))
            a = parent

    @property
    def ancestors(self):
        return [e[0] for e in self.path]

    @property
    def halo(self):
        return [e[2] for e in self.path]

    def subtree_levels(self, n_levels):
        """Nodes of this rank's subtree, per level (level -> int64 array)."""
        out = {}
        for lev in range(self.sub_level, n_levels + 1):
            d = lev - self.sub_level
            first = (self.sub + 1) * 2 ** d - 1
            out[lev] = np.arange(first, first + 2 ** d, dtype=np.int64)
        return out


class Exchange:
    """Point-to-point swaps with a partner group, counted per operation (``comm``:
    a :class:`~hsspetsc.mpi.comm.Comm`; the swaps follow an agreement)."""

    def __init__(self, comm):
        self.mpi = comm.mpi
        self.counts = {}

    def swap(self, op, entry, send, recv_size):
        """Send ``send`` to the entry's partners, receive ``recv_size`` doubles."""
        parent, _, _, src, dests = entry
        recv = np.empty(recv_size)
        c = self._counter(op)
        send = np.ascontiguousarray(send, dtype=np.float64)
        tag = TAG_BASE[op] + int(parent) % 1000
        reqs = [self.mpi.Irecv(recv, source=src, tag=tag)]
        reqs += [self.mpi.Isend(send, dest=q, tag=tag) for q in dests]
        from mpi4py import MPI
        MPI.Request.Waitall(reqs)
        c["messages_sent"] += len(dests)
        c["messages_received"] += 1
        c["bytes_sent"] += send.nbytes * len(dests)
        c["bytes_received"] += recv.nbytes
        return recv

    def _counter(self, op):
        return self.counts.setdefault(op, dict.fromkeys(
            ("calls", "messages_sent", "messages_received", "bytes_sent",
             "bytes_received"), 0))

    def call(self, op):
        self._counter(op)["calls"] += 1
