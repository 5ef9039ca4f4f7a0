"""The construction driver: one walk over the levels of the cluster tree, for one
process or for P ranks (``compress``, ``compress_sketch``, each with or without
``comm=``).

The tree is split over an :class:`~hsspetsc.mpi.ownership.Ownership`: one process is
its case P = 1, one rank owning the whole tree as its subtree, with no ancestors to
share, so everything below runs the same code for every P.

The cluster tree: each rank splits the nodes on its path to the root (alike with
the other ranks below them: N log2 P distances in all) and those of its subtree,
then the ranks' ranges of the order are gathered (an index array of length N on
every rank). The neighbour lists (``neighbors`` > 0): every rank builds the same
randomized trees, but searches only the leaves holding one of its indices, and a
skeleton that moves up to a shared node carries its lists. Per-node random streams
make all of it equal to the one-process construction, bit for bit.

Then, level by level from the leaves, each rank computes the skeletons of its
subtree's nodes (node keys, row sampling, IDs: :mod:`hsspetsc.compression.skeleton`, or
row IDs of the sketch: :mod:`hsspetsc.compression.sketch`), and above its subtree those
of its ancestors: it swaps its child's skeleton (indices; on the sketch path also
the reduced sketches, r x samples) with the sibling group, and every rank of the
group computes the ancestor alike. A rank reads the source only for its own nodes
(sampled rows of its nodes' columns, its leaf and near blocks, its couplings).

What only one process does: a near field (``budget`` > 0: near blocks between
leaves that are not siblings, far pairs above the siblings) and the work cap (the
construction stops at N^2 entries read, :class:`~hsspetsc.util.blocks.IncompressibleError`).
The result is an :class:`~hsspetsc.matrix.hss.HSSMatrix` (:func:`serial_matrix`) or
this rank's :class:`~hsspetsc.matrix.distributed.DistributedHSSMatrix`
(:func:`distributed_matrix`). The contract that follows
(:mod:`hsspetsc.compression.contract`) is one code for both as well.
"""
import hashlib
from dataclasses import dataclass

import numpy as np

from ..matrix.distributed import DistributedHSSMatrix, local_parts
from ..matrix.hss import BlockSet, HSSMatrix
from ..matrix.layout import Bases, ClusterTree, tree_depth, tree_layout
from ..mpi.ownership import Exchange, Ownership
from ..util.blocks import BlockReader, exclusive_cumsum, pointers, ranges
from ..util.threads import blas_single_thread
from .interactions import build_interactions
from .neighbors import approximate_neighbors
from .skeleton import LevelSampler, RankBudget
from .sketch import products, sketch_level
from .tree import PHASE_CHECK, PHASE_SKETCH, Metric, build_tree, phase_key, tree_from_order


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

    def bases(self, truncated):
        """:class:`~hsspetsc.matrix.layout.Bases` in node order (with one process,
        where this rank computed every node)."""
        rank, ncols = self.rank, self.ncols
        skel, pos, proj = self.arrays()
        take = ranges(self.skel_start, rank)
        psize = rank * ncols
        return Bases(rank=rank.copy(), skel_ptr=pointers(rank), skel_idx=skel[take],
                     skel_pos=pos[take], proj_ptr=pointers(psize),
                     proj=proj[ranges(self.proj_start, psize)], truncated=tuple(truncated))

    def arrays(self):
        """(skeletons, positions, interpolation matrices), flat in the order added
        (``skel_start`` / ``proj_start`` point into them)."""
        pos = np.concatenate(self.pos) if self.pos else np.zeros(0, np.int64)
        proj = np.concatenate(self.proj) if self.proj else np.zeros(0)
        return self.all_skeletons(), pos, proj


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


@dataclass
class Built:
    """What the driver built on this rank, before a matrix is made of it: the tree,
    the ownership, the per-node results of the nodes this rank computed
    (:class:`_Store`), the stored blocks of the nodes it holds (near: leaf blocks,
    far: K(skel, skel) of the far pairs, couplings: sibling blocks that are not far
    pairs), the matrix's info and parameters, and the build's message counts."""

    tree: ClusterTree
    own: Ownership
    store: "_Store"
    near: BlockSet
    far: BlockSet
    couplings: BlockSet
    info: dict
    params: dict
    counts: dict


def construct(ctx, perm=None):
    """Build H~ on this rank (parameters checked; ``ctx``: the
    :class:`~hsspetsc.compression.construction.Construction`, its ``comm`` the command's,
    or one process). ``perm``: the given order (``distance="given"``). Returns a
    :class:`Built`; :func:`serial_matrix` or :func:`distributed_matrix` makes the
    matrix of it."""
    src, diag, p, path, nt = (ctx.source, ctx.diagonal, ctx.params, ctx.path,
                              ctx.n_threads)
    c, ph, reader, where = ctx.comm, ctx.phases, ctx.reader, ctx.where
    n = src.n
    if c.mpi is not None:
        if p.get("budget", 0.0) > 0:
            raise ValueError(f"{where}(comm=...): a near field (budget > 0) is not "
                             f"distributed; use budget=0 (plain HSS).")
        # every rank must hold the same source and parameters: compare checksums
        c.check_same(_digest(src, diag, p, reader),
                     f"the source (its diagonal and sampled entries) and the "
                     f"parameters of {where}")
    if c.size > 1 and p.get("memory") is not None:
        # the default memory budget is the machine's: every rank takes the smallest,
        # so all of them cap the shared nodes alike
        p = dict(p, memory=c.min(p["memory"]))
    sketch = None
    if path == "sketch":        # products first, with the source's own BLAS threads
        rng = np.random.default_rng(phase_key(p["seed"], PHASE_SKETCH))
        Omega = rng.standard_normal((n, p["samples"]))
        # a list emptied as it is permuted: at most three N x s arrays at once
        sketch = [products(src, Omega, where), Omega]
        del Omega
        reader.products += p["samples"]
        if reader.limit is not None:
            reader.limit -= float(reader.products) * n
        ph.done("products")
    with blas_single_thread():
        L = tree_depth(n, p["leaf_size"])
        own = Ownership(*tree_layout(n, L), L, c.size, c.rank)
        metric = None
        if p["distance"] in ("angle", "kernel", "geometric"):
            metric = Metric(src, p["distance"], diag, reader, nt)
            if c.size == 1:
                tree = build_tree(n, metric, p["leaf_size"], p["seed"])
            else:
                # each rank splits its ancestors (alike with the rest of their
                # group) and its subtree; the ranges of the order are then gathered
                lv = own.subtree_levels(L)
                tree = build_tree(n, metric, p["leaf_size"], p["seed"],
                                  nodes_at=lambda lev: _level_nodes(own, lev, lv)[0])
                tree = _gather_order(tree, own, c)
        else:                                   # natural / given order
            tree = tree_from_order(n, p["leaf_size"], perm)
        ph.done("tree")
        nbrs = None
        if path == "entries" and p["neighbors"] > 0:
            mine = total = None
            if c.size > 1:
                # the neighbours of this rank's indices only (the skeletons of other
                # ranks arrive with their lists, see _swap_skeleton)
                mine = np.zeros(n, dtype=bool)
                mine[tree.perm[own.lo:own.hi]] = True
                total = c.sum
            nbrs = approximate_neighbors(n, metric, p["neighbors"], p["leaf_size"],
                                         p["seed"], mine=mine, total=total)
            del mine
        ph.done("neighbors")
        inter = build_interactions(tree, nbrs, p["budget"])
        ph.done("interactions")
        x = Exchange(c)
        store = _Store(tree.n_nodes)
        held = _held(tree, own)
        near_pairs = inter.near_pairs[held[inter.near_pairs[:, 0]]]
        far_pairs = inter.far_pairs[held[(inter.far_pairs[:, 0] - 1) // 2]]
        if path == "entries":
            _entry_skeletons(tree, reader, nbrs, inter, p, own, x, store, c)
            ph.done("skeletons")
            near, far, couplings = _entry_blocks(tree, reader, store, held, near_pairs,
                                                 far_pairs)
        else:
            # this rank's rows in tree order, one array at a time: the products are
            # the largest buffers
            rows = tree.perm[own.lo:own.hi]
            Yt = np.ascontiguousarray(sketch[0][rows])
            sketch[0] = None
            Ot = np.ascontiguousarray(sketch[1][rows])
            sketch[1] = None
            leaf_data, leaf_off, cpl_off, cpl_data = _sketch_skeletons(
                tree, reader, Yt, Ot, p, own, x, store, c)
            del Yt, Ot
            ph.done("skeletons")
            near = BlockSet(near_pairs, leaf_off[near_pairs[:, 0]], leaf_data)
            far = _in_pair_order(far_pairs, cpl_off[(far_pairs[:, 0] - 1) // 2],
                                 cpl_data, store.rank)
            couplings = BlockSet.empty()
        ph.done("blocks")
    truncated = [t for part in c.gather(store.truncated) for t in part]
    truncated.sort(key=lambda t: t["node"])
    info = {"neighbor_recall": None if nbrs is None else nbrs.recall,
            "neighbor_iterations": 0 if nbrs is None else nbrs.iterations,
            "truncated_nodes": truncated}
    return Built(tree=tree, own=own, store=store, near=near, far=far,
                 couplings=couplings, info=info, params=dict(p, construction=path),
                 counts=x.counts)


def serial_matrix(b):
    """The :class:`~hsspetsc.matrix.hss.HSSMatrix` of a one-process build (this rank
    computed every node: the bases are laid out in node order)."""
    return HSSMatrix(tree=b.tree, bases=b.store.bases(b.info["truncated_nodes"]),
                     near=b.near, far=b.far, couplings=b.couplings, params=b.params,
                     info=b.info)


def distributed_matrix(b, comm):
    """This rank's :class:`~hsspetsc.matrix.distributed.DistributedHSSMatrix` of a
    build over ``comm``."""
    tree, own, store = b.tree, b.own, b.store
    skel_all, pos_all, proj_all = store.arrays()
    leaf_off = np.zeros(tree.n_nodes, np.int64)
    leaf_off[b.near.pairs[:, 0]] = b.near.offsets
    cpl_off = np.zeros(tree.n_nodes, np.int64)
    cpl_off[(b.far.pairs[:, 0] - 1) // 2] = b.far.offsets
    parts = local_parts(tree.n, tree.n_levels, own, store.rank, store.skel_start,
                        skel_all, pos_all, store.proj_start, proj_all, leaf_off,
                        b.near.data, cpl_off, b.far.data)
    D = DistributedHSSMatrix(comm=comm, local_indices=tree.perm[own.lo:own.hi].copy(),
                             compensation=None, params=b.params, info=b.info, **parts)
    D._x.counts.update(b.counts)
    return D


def _held(tree, own):
    """Which nodes this rank computes (boolean per node): its subtree's and its
    ancestors'. It holds the leaf blocks of its leaves and the couplings of the
    children of its nodes (with one process: every node)."""
    held = np.zeros(tree.n_nodes, dtype=bool)
    for nodes in own.subtree_levels(tree.n_levels).values():
        held[nodes] = True
    held[np.asarray(own.ancestors, np.int64)] = True
    return held


def _entry_blocks(tree, reader, store, held, near_pairs, far_pairs):
    """The exact entries this rank stores: K(leaf, leaf) of its near pairs, K(skel,
    skel) of its far pairs and the sibling couplings that are not far pairs (a near
    field, budget > 0)."""
    left = np.arange(1, tree.n_nodes, 2, dtype=np.int64)
    left = left[held[(left - 1) // 2]]
    sib = np.column_stack([left, left + 1])
    n_nodes = tree.n_nodes
    is_far = np.isin(sib[:, 0] * n_nodes + sib[:, 1],
                     far_pairs[:, 0] * n_nodes + far_pairs[:, 1])
    by_skel = (store.skel_start, store.rank, store.all_skeletons())
    return stored_blocks(tree, reader, by_skel, near_pairs, far_pairs,
                         sib[~is_far].reshape(-1, 2))


def stored_blocks(tree, reader, by_skel, near_pairs, far_pairs, sib_pairs):
    """The exact entries H~ stores, for the given pairs: K(leaf, leaf) near blocks,
    K(skel, skel) far blocks and sibling couplings (build and refresh alike).
    ``by_skel``: (start, length, index array) of every node's skeleton."""
    by_index = (tree.node_off, tree.node_size, tree.perm)
    return (pack_blocks(reader, near_pairs, by_index, by_index),
            pack_blocks(reader, far_pairs, by_skel, by_skel),
            pack_blocks(reader, sib_pairs, by_skel, by_skel))


def pack_blocks(reader, pairs, rows, cols):
    """One packer for every stored block: K(rows of a, cols of b) for each pair
    (a, b); ``rows`` and ``cols`` are (start, length, index array) per node."""
    a, b = pairs[:, 0], pairs[:, 1]
    data, off = reader.read(rows[0][a], rows[1][a], rows[2], cols[0][b], cols[1][b],
                            cols[2])
    return BlockSet(pairs, off, data)


def _in_pair_order(pairs, offsets, data, rank):
    """A BlockSet of blocks r_a x r_b at ``offsets`` in ``data``, laid out again in
    the order of ``pairs`` (the sketch path reads the couplings from the leaves up)."""
    sizes = rank[pairs[:, 0]] * rank[pairs[:, 1]]
    return BlockSet(pairs, exclusive_cumsum(sizes),
                    np.ascontiguousarray(data[ranges(offsets, sizes)], np.float64))


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
        budget.spend(ids.rank[counted], ids.ncols[counted], total=c.sum)
        prev = (ids.skel, ids.skel_ptr[0::2].copy())
    c.agree()
    for entry in own.path:
        if entry[0] == 0:
            _swap_skeleton(x, entry, store)


def _sketch_skeletons(tree, reader, Yt, Ot, p, own, x, store, c):
    """Skeletons from the sketch (see hsspetsc.compression.sketch), my nodes only. Yt, Ot: my rows
    of Y and Omega in tree order. Returns (leaf data, leaf offsets per node,
    coupling offsets per parent, coupling data): the blocks read on the way are the
    near and far blocks of the result."""
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
        return D, leaf_off_full, cpl_off, np.zeros(0)
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
    return (D, leaf_off_full, cpl_off,
            np.concatenate(cpl_parts) if cpl_parts else np.zeros(0))
