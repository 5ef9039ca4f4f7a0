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
machines. This module holds the format and the one atomic writer of the package;
the matrices say what goes into a file (``_archive``) and :func:`hsspetsc.load` (in
:mod:`hsspetsc.matrix.hss`) builds one from it. A distributed matrix
(``compress(comm=...)``: each rank holds its subtree) has no file format yet; save
the serial matrix of the same source instead.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from ..util.validation import check_writable
from ..version import __version__

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
    archive = getattr(obj, "_archive", None)
    if not callable(archive):
        raise TypeError(f"save: expected an HSSMatrix or an HSSFactorization. Got "
                        f"{type(obj).__name__}.")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {"format": np.array(FORMAT), "version": np.int64(VERSION),
              "library": np.array(__version__)}
    arrays.update(archive())
    arrays = {k: (np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
                  if isinstance(v, np.ndarray) and v.dtype.kind in "if" else v)
              for k, v in arrays.items()}
    check_writable(path, "save")
    write_npz_atomically(path, arrays)
    return path


def json_text(obj):
    """``obj`` (params, info) as a JSON text array for an archive."""
    return np.array(_json(obj))


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


def read_archive(path):
    """The arrays of a file :func:`save` wrote (a dict), after checking that it is
    one: clear errors for a missing, foreign, truncated or newer file."""
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
            return {k: z[k] for k in z.files}
        except _UNREADABLE as e:
            raise ValueError(f"load: {path} is truncated or damaged ({e}).") from None
