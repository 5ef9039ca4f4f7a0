"""Construction of a DistributedHSSMatrix (``compress(..., comm=comm)`` and
``compress_sketch(..., comm=comm)``).

The cluster tree: each rank splits the nodes on its path to the root (alike with
the other ranks below them: N log2 P distances in all) and those of its subtree,
then the ranks' ranges of the order are gathered (an index array of length N on
every rank). The neighbour lists (``neighbors`` > 0): every rank builds the same
randomized trees, but searches only the leaves holding one of its indices, and a
skeleton that moves up to a shared node carries its lists. Per-node random streams
make all of it equal to the serial construction, bit for bit.
Then, level by level from the leaves, each rank computes the skeletons of its
subtree's nodes with the serial kernels (node keys, row sampling, IDs: bit for bit
the serial ones) and, above its subtree, of its ancestors: it swaps its child's
skeleton (indices; on the sketch path also the reduced sketches, r x samples) with
the sibling group, and every rank of the group computes the ancestor alike. A rank
reads the source only for its own nodes (sampled rows of its nodes' columns, its
leaf blocks, its couplings). The contract that follows
(:mod:`hsspetsc.compression.contract`, the serial one) runs distributed as it is:
exact rows are read for the local columns only, every sum goes through the
communicator, the compensation is certified by distributed factorizations.
"""
import hashlib

import numpy as np

from ..matrix.distributed import DistributedHSSMatrix, local_parts
from ..mpi.ownership import Exchange, Ownership
from ..util.blocks import BlockReader, exclusive_cumsum
from ..util.threads import blas_single_thread
from .interactions import build_interactions
from .neighbors import approximate_neighbors
from .skeleton import LevelSampler, RankBudget
from .sketch import products, sketch_level
from .tree import (
    PHASE_CHECK,
    PHASE_SKETCH,
    ClusterTree,
    Metric,
    build_tree,
    phase_key,
    tree_depth,
    tree_from_order,
    tree_layout,
)


class _Store:
    """Per-node results (indexed by tree node) of the nodes this rank computes."""

    def __init__(self, n_nodes):
        self.rank = np.zeros(n_nodes, np.int64)
        self.ncols = np.zeros(n_nodes, np.int64)
        self.skel_start = np.zeros(n_nodes, np.int64)
        self.proj_start = np.zeros(n_nodes, np.int64)
        self.skel, self.pos, self.proj = [], [], []
        self.n_skel = self.n_proj = 0
        self.truncated = []
        self._cat = None

    def add(self, nodes, rank, ncols, skel, pos, proj, achieved, tol, cause, counted):
        self.rank[nodes] = rank
        self.ncols[nodes] = ncols
        self.skel_start[nodes] = self.n_skel + exclusive_cumsum(rank)
        self.proj_start[nodes] = self.n_proj + exclusive_cumsum(rank * ncols)
        self.skel.append(np.asarray(skel, np.int64))
        self.pos.append(np.asarray(pos, np.int64))
        self.proj.append(np.asarray(proj, np.float64))
        self._cat = None
        self.n_skel += int(rank.sum())
        self.n_proj += int((rank * ncols).sum())
        for t in np.flatnonzero((achieved > tol) & counted):
            lev = int(np.floor(np.log2(nodes[t] + 1)))
            self.truncated.append({"node": int(nodes[t]), "level": lev,
                                   "rank": int(rank[t]), "achieved": float(achieved[t]),
                                   "cause": cause})

    def all_skeletons(self):
        if self._cat is None:
            self._cat = (np.concatenate(self.skel) if self.skel
                         else np.zeros(0, np.int64))
        return self._cat

    def skeleton(self, a):
        return self.all_skeletons()[self.skel_start[a]:self.skel_start[a] + self.rank[a]]

    def arrays(self):
        cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa
        return (cat(self.skel, np.int64), cat(self.pos, np.int64), cat(self.proj, np.float64))


class _OwnBlocks:
    """A collective source read through ``entries_batch_own`` (each rank its own
    blocks, one collective call per round)."""

    collective = True

    def __init__(self, src):
        self.src, self.n = src, src.n

    def evaluator(self):
        return None

    def entries_batch(self, blocks):
        return self.src.entries_batch_own(blocks)


def _digest(src, diag, p, reader):
    """A checksum of what every rank must hold alike: the diagonal, an 8 x 8 block of
    entries at random positions (a kernel's diagonal is often constant), and the
    parameters."""
    h = hashlib.sha256(np.ascontiguousarray(diag).tobytes())
    if not getattr(src, "collective", False):
        # (a collective source sums its entries over the ranks, which may round
        # differently on each: its diagonal is broadcast, the same bits everywhere)
        rng = np.random.default_rng(phase_key(p["seed"], PHASE_CHECK, 2))
        idx = np.sort(rng.choice(src.n, min(src.n, 8), replace=False)).astype(np.int64)
        block, _ = reader.read([0], [idx.size], idx, [0], [idx.size], idx)
        h.update(np.ascontiguousarray(block).tobytes())
    h.update(repr(sorted((k, v) for k, v in p.items() if k != "memory")).encode())
    return h.hexdigest()


def _swap_skeleton(x, entry, store, extra=None, nbr=None):
    """Swap (rank, skeleton[, extra rows]) of my child with the sibling group; the
    sibling's go into ``store`` (its halo entry). Returns the sibling's extra.
    ``nbr`` = (index, dist) tables: the neighbour lists of the skeleton travel with
    it (a rank searched neighbours for its own indices only)."""
    _, me, sib = entry[:3]
    r = x.swap("build", entry, np.array([store.rank[me]], np.float64), 1)
    rs = int(r[0])
    skel = x.swap("build", entry, store.skeleton(me).astype(np.float64), rs)
    if nbr is not None and nbr[0].shape[1] > 0:
        idx, dist = nbr
        k = idx.shape[1]
        mine = store.skeleton(me)
        theirs = skel.astype(np.int64)
        idx[theirs] = x.swap("build", entry, idx[mine].astype(np.float64),
                             rs * k).reshape(rs, k).astype(np.int64)
        dist[theirs] = x.swap("build", entry, dist[mine], rs * k).reshape(rs, k)
    store.add(np.array([sib]), np.array([rs]), np.array([0]), skel.astype(np.int64),
              np.arange(rs), np.zeros(0), np.zeros(1), 1.0, "", np.zeros(1, bool))
    out = None
    if extra is not None:
        s = extra.shape[1] if extra.ndim == 2 else 0
        out = x.swap("build", entry, extra, rs * s).reshape(rs, s)
    return out


def distributed_reader(src, path, where, nt):
    """The BlockReader of a distributed construction: a source whose entries are
    sums over the ranks (DistributedGN) is read through its collective batch."""
    if getattr(src, "collective", False):
        # entries summed over the ranks: each rank asks for its own blocks in one
        # collective call per round, which the sketch path keeps in step on every
        # rank (one round per level); the entries path does not
        if path == "entries":
            raise ValueError(f"{where}(comm=...): a source whose entries are sums over "
                             f"the ranks (e.g. DistributedGN) is compressed with "
                             f"compress_sketch(comm=...), not from entries.")
        return BlockReader(_OwnBlocks(src), nt)
    return BlockReader(src, nt)


def construct(ctx, perm=None):
    """The distributed back end of compress / compress_sketch (parameters checked;
    ``ctx``: the :class:`~hsspetsc.compression.construction.Construction`, its ``comm`` the
    command's)."""
    src, diag, p, path, nt = (ctx.source, ctx.diagonal, ctx.params, ctx.path,
                              ctx.n_threads)
    c, ph, reader, where = ctx.comm, ctx.phases, ctx.reader, ctx.where
    if p.get("budget", 0.0) > 0:
        raise ValueError(f"{where}(comm=...): a near field (budget > 0) is not "
                         f"distributed; use budget=0 (plain HSS).")
    n = src.n
    # every rank must hold the same source and parameters: compare checksums
    c.check_same(_digest(src, diag, p, reader),
                 f"the source (its diagonal and sampled entries) and the parameters of "
                 f"{where}")
    size, me = c.size, c.rank
    if size > 1 and p.get("memory") is not None:
        # the default memory budget is the machine's: every rank takes the smallest,
        # so all of them cap the shared nodes alike
        p = dict(p, memory=c.min(p["memory"]))
    if path == "sketch":
        rng = np.random.default_rng(phase_key(p["seed"], PHASE_SKETCH))
        Omega = rng.standard_normal((n, p["samples"]))
        Y = products(src, Omega, where)
        reader.products += p["samples"]
        ph.done("products")
    with blas_single_thread():
        nbrs = None
        L = tree_depth(n, p["leaf_size"])
        own = Ownership(*tree_layout(n, L), L, size, me)
        if p["distance"] in ("angle", "kernel", "geometric"):
            # each rank splits its ancestors (alike with the rest of their group) and
            # its subtree; the ranges of the order are then gathered
            metric = Metric(src, p["distance"], diag, reader, nt)
            lv = own.subtree_levels(L)
            tree = build_tree(n, metric, p["leaf_size"], p["seed"],
                              nodes_at=lambda lev: _level_nodes(own, lev, lv)[0])
            tree = _gather_order(tree, own, c)
        else:
            tree = tree_from_order(n, p["leaf_size"], perm)
        ph.done("tree")
        if path == "entries" and p["neighbors"] > 0:
            # the neighbours of this rank's indices only (the skeletons of other ranks
            # arrive with their lists, see _swap_skeleton)
            mine = np.zeros(n, dtype=bool)
            mine[tree.perm[own.lo:own.hi]] = True
            nbrs = approximate_neighbors(n, metric, p["neighbors"], p["leaf_size"],
                                         p["seed"], mine=mine, total=c.sum)
            del mine
        ph.done("neighbors")
        x = Exchange(c)
        store = _Store(tree.n_nodes)
        if path == "entries":
            inter = build_interactions(tree, None, 0.0)
            _entry_skeletons(tree, reader, nbrs, inter, p, own, x, store, c)
        else:
            lo, hi = own.lo, own.hi
            Yt = np.ascontiguousarray(Y[tree.perm[lo:hi]])
            Ot = np.ascontiguousarray(Omega[tree.perm[lo:hi]])
            del Y, Omega
            leaf_data, leaf_off_full, cpl = _sketch_skeletons(tree, reader, Yt, Ot, p,
                                                              own, x, store, c)
            del Yt, Ot
        ph.done("skeletons")
        # the blocks: my leaves and the couplings of my nodes' children
        skel_all, pos_all, proj_all = store.arrays()
        lv = own.subtree_levels(tree.n_levels)
        anc = np.asarray(own.ancestors, np.int64)
        computed = np.union1d(np.concatenate(list(lv.values())), anc)
        parents = computed[computed < tree.first_leaf]
        if path == "entries":
            leaves = lv[tree.n_levels]
            lo_, sz = tree.node_off[leaves], tree.node_size[leaves]
            leaf_data, loff = reader.read(lo_, sz, tree.perm, lo_, sz, tree.perm)
            leaf_off_full = np.zeros(tree.n_nodes, np.int64)
            leaf_off_full[leaves] = loff
            cpl = None
        cpl_off = np.zeros(tree.n_nodes, np.int64)
        l, r = 2 * parents + 1, 2 * parents + 2
        if cpl is None:
            st, rk = store.skel_start, store.rank
            cdata, coff = reader.read(st[l], rk[l], skel_all, st[r], rk[r], skel_all)
            cpl_off[parents] = coff
        else:
            cdata = cpl[1]
            cpl_off[parents] = cpl[0][parents]
        ph.done("blocks")
    parts = local_parts(n, tree.n_levels, own, store.rank, store.skel_start,
                        skel_all, pos_all, store.proj_start, proj_all, leaf_off_full,
                        leaf_data, cpl_off, cdata)
    truncated = [t for part in c.gather(store.truncated) for t in part]
    truncated.sort(key=lambda t: t["node"])
    local = tree.perm[own.lo:own.hi].copy()
    del tree
    info = {"neighbor_recall": None if nbrs is None else nbrs.recall,
            "neighbor_iterations": 0 if nbrs is None else nbrs.iterations,
            "truncated_nodes": truncated}
    params = dict(p, construction=path)
    D = DistributedHSSMatrix(comm=c, local_indices=local, compensation=None,
                             params=params, info=info, **parts)
    D._x.counts.update(x.counts)
    return D


def _gather_order(tree, own, c):
    """The tree with the whole order: every rank's range of ``perm`` gathered."""
    perm = c.allgatherv(tree.perm[own.lo:own.hi], np.diff(own.offsets), np.int64)
    iperm = np.empty_like(perm)
    iperm[perm] = np.arange(perm.size, dtype=np.int64)
    return ClusterTree(n=tree.n, n_levels=tree.n_levels, perm=perm, iperm=iperm,
                       node_off=tree.node_off, node_size=tree.node_size)


def _level_nodes(own, lev, lv):
    """The nodes this rank computes at level ``lev`` (its subtree's, or its ancestor)."""
    if lev >= own.sub_level:
        return lv[lev], None
    for entry in own.path:
        a = entry[0]
        if int(np.floor(np.log2(a + 1))) == lev:
            return np.array([a], np.int64), entry
    raise AssertionError("no node at this level")


def _counted(own, nodes):
    """Nodes whose figures this rank counts: all of its subtree's, a shared node
    only on the first rank of its group (a level holds one or the other)."""
    if nodes.size == 1 and int(nodes[0]) in own.group:
        return np.array([own.group[int(nodes[0])][0] == own.rank])
    return np.ones(nodes.size, dtype=bool)


def _entry_skeletons(tree, reader, nbrs, inter, p, own, x, store, c):
    """Skeletons from sampled entries (see hsspetsc.compression.skeleton), my nodes only."""
    L = tree.n_levels
    budget = RankBudget(tree, inter, p["max_rank"], p["memory"])
    if L == 0:
        return
    sampler = LevelSampler(tree, reader, nbrs, inter, p["tol"], p["seed"],
                           reader.n_threads, p.get("shift"))
    lv = own.subtree_levels(L)
    prev = None
    for lev in range(L, 0, -1):
        c.agree()       # every rank passes here once per level: errors before any swap
        nodes, entry = _level_nodes(own, lev, lv)
        if lev == L:
            cols_ptr = np.r_[tree.node_off[nodes], tree.node_off[nodes[-1]]
                             + tree.node_size[nodes[-1]]].astype(np.int64)
            cols_idx = tree.perm
        elif entry is None:
            cols_idx, cols_ptr = prev
        else:
            # the sibling's skeleton, with its neighbour lists (this rank searched
            # neighbours for its own indices only)
            _swap_skeleton(x, entry, store, nbr=(sampler.nbr_idx, sampler.nbr_dist))
            a = entry[0]
            cols_idx = np.r_[store.skeleton(2 * a + 1), store.skeleton(2 * a + 2)]
            cols_ptr = np.array([0, cols_idx.size], np.int64)
        cap, cause = budget.cap(lev)
        ids = sampler.ids(lev, nodes, cols_ptr, cols_idx, cap)
        counted = _counted(own, nodes)
        store.add(nodes, ids.rank, ids.ncols, ids.skel, ids.pos, ids.proj, ids.achieved,
                  p["tol"], cause, counted)
        r, nc = ids.rank, ids.ncols
        spent = 8.0 * float(np.sum((r * nc + r.astype(float) ** 2)[counted]))
        budget.left -= c.sum(spent)
        prev = (ids.skel, ids.skel_ptr[0::2].copy())
    c.agree()
    for entry in own.path:
        if entry[0] == 0:
            _swap_skeleton(x, entry, store)


def _sketch_skeletons(tree, reader, Yt, Ot, p, own, x, store, c):
    """Skeletons from the sketch (see hsspetsc.compression.sketch), my nodes only. Yt, Ot: my rows
    of Y and Omega in tree order. Returns (leaf data, leaf offsets per node,
    (coupling offsets per parent, coupling data))."""
    L, s = tree.n_levels, Yt.shape[1]
    perm = tree.perm
    lv = own.subtree_levels(L)
    leaves = lv[L]
    lo, sz = tree.node_off[leaves], tree.node_size[leaves]
    D, Doff = reader.read(lo, sz, perm, lo, sz, perm)
    leaf_off_full = np.zeros(tree.n_nodes, np.int64)
    leaf_off_full[leaves] = Doff
    cpl_off = np.zeros(tree.n_nodes, np.int64)
    cpl_parts, n_cpl = [], 0
    if L == 0:
        return D, leaf_off_full, (cpl_off, np.zeros(0))
    Yt, Ot = Yt.reshape(-1), Ot.reshape(-1)
    Yh_prev = Oh_prev = np.zeros(0)
    prev_off = np.zeros(0, np.int64)
    prev_skel = None
    for lev in range(L, 0, -1):
        c.agree()       # every rank passes here once per level: errors before any swap
        nodes, entry = _level_nodes(own, lev, lv)
        nn = nodes.size
        if lev == L:
            ncols = tree.node_size[nodes].astype(np.int64)
            rank_l = rank_r = np.zeros(nn, np.int64)
            blk, blk_off = D, Doff
            cols_idx, cols_ptr = perm, np.r_[tree.node_off[nodes], 0].astype(np.int64)
        else:
            if entry is not None:
                a = entry[0]
                r_me = int(store.rank[entry[1]])
                mine = np.concatenate([Yh_prev[:r_me * s].reshape(r_me, s),
                                       Oh_prev[:r_me * s].reshape(r_me, s)], axis=1)
                other = _swap_skeleton(x, entry, store, mine)
                rl, rr = store.rank[2 * a + 1], store.rank[2 * a + 2]
                if entry[1] == 2 * a + 1:
                    Yh_prev = np.r_[mine[:, :s].ravel(), other[:, :s].ravel()]
                    Oh_prev = np.r_[mine[:, s:].ravel(), other[:, s:].ravel()]
                else:
                    Yh_prev = np.r_[other[:, :s].ravel(), mine[:, :s].ravel()]
                    Oh_prev = np.r_[other[:, s:].ravel(), mine[:, s:].ravel()]
                prev_off = np.array([0, rl], np.int64)
                rank_l, rank_r = np.array([rl]), np.array([rr])
            else:
                rank_l = store.rank[2 * nodes + 1]
                rank_r = store.rank[2 * nodes + 2]
            ncols = (rank_l + rank_r).astype(np.int64)
            sk_all, st = store.all_skeletons(), store.skel_start
            blk, blk_off = reader.read(st[2 * nodes + 1], rank_l, sk_all, st[2 * nodes + 2],
                                       rank_r, sk_all)
            cpl_off[nodes] = n_cpl + blk_off
            cpl_parts.append(blk)
            n_cpl += blk.size
            cols_idx = (prev_skel if entry is None else
                        np.r_[store.skeleton(2 * a + 1), store.skeleton(2 * a + 2)])
        if lev < L:
            cols_ptr = np.r_[exclusive_cumsum(ncols), 0]
        ids, Yh_prev, Oh_prev, prev_off = sketch_level(
            lev, lev == L, Yt, Ot, s, (tree.node_off[nodes] - own.lo).astype(np.int64),
            blk, blk_off, ncols, rank_l.astype(np.int64), rank_r.astype(np.int64),
            (Yh_prev, Oh_prev, prev_off), cols_ptr, cols_idx, p["tol"], p["max_rank"],
            reader.n_threads, p.get("shift"), L)
        rank, achieved = ids.rank, ids.achieved
        store.add(nodes, rank, ncols, ids.skel, ids.pos, ids.proj, achieved, p["tol"],
                  "samples", _counted(own, nodes))
        prev_skel = ids.skel
    c.agree()
    for entry in own.path:
        if entry[0] == 0:
            _swap_skeleton(x, entry, store)
    # the root's coupling
    if 0 in own.ancestors or own.sub == 0:
        sk_all, st = store.all_skeletons(), store.skel_start
        blk, _ = reader.read([st[1]], [store.rank[1]], sk_all, [st[2]], [store.rank[2]],
                             sk_all)
        cpl_off[0] = n_cpl
        cpl_parts.append(blk)
        n_cpl += blk.size
    return D, leaf_off_full, (cpl_off, np.concatenate(cpl_parts) if cpl_parts else np.zeros(0))
