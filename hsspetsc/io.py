"""Saving and loading compressed matrices and factorizations (numpy ``.npz``).

Format ``hsspetsc-hss``, version 1: one ``.npz`` archive (``numpy.savez``; no
pickled objects, loaded with ``allow_pickle=False``) holding every named part of an
:class:`~hsspetsc.HSSMatrix` as a plain array:

- ``format`` ("hsspetsc-hss"), ``version`` (1), ``kind`` ("matrix" or
  "factorization"), ``library`` (the hsspetsc version that wrote it);
- tree: ``n``, ``n_levels``, ``perm``, ``iperm``, ``node_off``, ``node_size``;
- bases: ``rank``, ``skel_ptr``, ``skel_idx``, ``skel_pos``, ``proj_ptr``, ``proj``;
- blocks: ``near_pairs``, ``near_offsets``, ``near_data`` and the same for ``far``
  and ``couplings``;
- ``compensation``, ``factor_compensation`` (empty when absent);
- ``params``, ``info``, ``truncated``: JSON text;
- a factorization adds ``shift``; loading factors again at that shift (O(N s^2), no
  entries; bitwise the same solve, the factorization being deterministic).

All integers are little-endian int64 and all reals float64, so a file moves between
machines. A distributed matrix (``compress(comm=...)``: each rank holds its subtree)
has no file format yet; save the serial matrix of the same source instead.
"""
import json
import os
import zipfile
import zlib

import numpy as np

FORMAT = "hsspetsc-hss"
VERSION = 1
_UNREADABLE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _json(obj):
    """JSON text of params/info (numpy scalars and arrays as plain numbers/lists)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)
    return json.dumps(obj, default=default)


def save(obj, path):
    """Write an HSSMatrix or HSSFactorization to ``path`` (.npz added if missing);
    returns the path written. The file is written to a temporary name first and
    renamed, so an interrupted save never leaves a truncated file behind."""
    from . import __version__
    from .factor import HSSFactorization
    from .hss import HSSMatrix
    if isinstance(obj, HSSFactorization):
        H, kind, extra = obj.H, "factorization", {"shift": np.float64(obj.shift)}
    elif isinstance(obj, HSSMatrix):
        H, kind, extra = obj, "matrix", {}
    else:
        raise TypeError(f"save: expected an HSSMatrix or an HSSFactorization. Got "
                        f"{type(obj).__name__}.")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    parts = H._parts
    tree, bases = parts["tree"], parts["bases"]
    arrays = {"format": np.array(FORMAT), "version": np.int64(VERSION),
              "kind": np.array(kind), "library": np.array(__version__),
              "n": np.int64(tree.n), "n_levels": np.int64(tree.n_levels),
              "perm": tree.perm, "iperm": tree.iperm, "node_off": tree.node_off,
              "node_size": tree.node_size, "rank": bases.rank,
              "skel_ptr": bases.skel_ptr, "skel_idx": bases.skel_idx,
              "skel_pos": bases.skel_pos, "proj_ptr": bases.proj_ptr,
              "proj": bases.proj, "truncated": np.array(_json(list(bases.truncated))),
              "params": np.array(_json(H.params)), "info": np.array(_json(H._info))}
    for name in ("near", "far", "couplings"):
        b = parts[name]
        arrays[f"{name}_pairs"] = b.pairs
        arrays[f"{name}_offsets"] = b.offsets
        arrays[f"{name}_data"] = b.data
    for name in ("compensation", "factor_compensation"):
        c = parts[name]
        arrays[name] = np.zeros(0) if c is None else c
    arrays.update(extra)
    arrays = {k: (np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
                  if isinstance(v, np.ndarray) and v.dtype.kind in "if" else v)
              for k, v in arrays.items()}
    from ._validation import check_writable
    check_writable(path, "save")
    write_npz_atomically(path, arrays)
    return path


def atomic_write(path, write):
    """``write(f)`` into a binary temporary file of this process's own beside
    ``path``, then a rename: a reader sees the old file or the new one, never half
    of one; processes writing the same file at once do not collide (the last
    rename wins with a complete file). The package's one writer of files."""
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_npz_atomically(path, arrays):
    """``np.savez(path, **arrays)`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path, n_threads=None):
    """Read what :func:`save` wrote: an HSSMatrix, or an HSSFactorization (factored
    again at its saved shift). Clear errors for a missing, foreign, truncated or
    newer file."""
    from .hss import BlockSet, HSSMatrix
    from .skeleton import Bases
    from .tree import ClusterTree
    path = os.fspath(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except _UNREADABLE as e:
        raise ValueError(f"load: {path} is not an hsspetsc file (not a readable .npz: "
                         f"{e}).") from None
    with z:
        try:
            fmt = str(z["format"])
            version = int(z["version"])
        except KeyError:
            raise ValueError(f"load: {path} is a .npz but not an hsspetsc file (no "
                             f"'format' entry).") from None
        if fmt != FORMAT:
            raise ValueError(f"load: {path} holds format {fmt!r}, not {FORMAT!r}.")
        if version > VERSION:
            raise ValueError(f"load: {path} has format version {version}; this hsspetsc "
                             f"reads up to {VERSION}: upgrade hsspetsc.")
        try:
            a = {k: z[k] for k in z.files}
        except _UNREADABLE as e:
            raise ValueError(f"load: {path} is truncated or damaged ({e}).") from None
    try:
        tree = ClusterTree(n=int(a["n"]), n_levels=int(a["n_levels"]), perm=a["perm"],
                           iperm=a["iperm"], node_off=a["node_off"],
                           node_size=a["node_size"])
        bases = Bases(rank=a["rank"], skel_ptr=a["skel_ptr"], skel_idx=a["skel_idx"],
                      skel_pos=a["skel_pos"], proj_ptr=a["proj_ptr"], proj=a["proj"],
                      truncated=tuple(json.loads(str(a["truncated"]))))
        blocks = {name: BlockSet(a[f"{name}_pairs"].reshape(-1, 2), a[f"{name}_offsets"],
                                 a[f"{name}_data"]) for name in ("near", "far", "couplings")}
        comp = {name: (a[name] if a[name].size else None)
                for name in ("compensation", "factor_compensation")}
        H = HSSMatrix(tree=tree, bases=bases, **blocks, **comp,
                      params=json.loads(str(a["params"])), info=json.loads(str(a["info"])))
    except KeyError as e:
        raise ValueError(f"load: {path} lacks the entry {e}; it is incomplete.") from None
    if str(a["kind"]) == "factorization":
        return H.factorize(float(a["shift"]), n_threads=n_threads)
    return H
