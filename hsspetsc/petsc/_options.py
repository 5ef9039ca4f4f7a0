"""The -pc_hss_* options of HSSPC, in one table: ``-help`` lists them with help,
default and current value (as PETSc's own PCs do), and names under the prefix
that are not in the table are reported (a warning; an error with -pc_hss_strict).
"""
import difflib

from petsc4py import PETSc

from ..compression import params as _params

# name -> (kind, default, help); compression options come from hsspetsc.compression.params
_COMPRESSION = ("leaf_size", "max_rank", "tol", "neighbors", "budget", "distance", "seed")
TABLE = dict(
    {k: (_params.SPEC[k].kind, _params.default(k), _params.SPEC[k].help)
     for k in _COMPRESSION},
    samples=(int, 0, "n > 0: build H~ from n products (compress_sketch) instead of "
                     "entries"),
    auto=(bool, False, "choose leaf size, neighbours and near field with hsspetsc.tune"),
    shift=(float, 0.0, "extra shift added to the operator's own shift"),
    shift_aware=(bool, False, "compress for the factor's shift s: -pc_hss_tol is then "
                              "the share c of it, |K - H~|_2 <= c s (default c 0.5: "
                              "condition number <= 3)"),
    validate=(int, 0, "check the ranks of n sampled nodes with SLEPc"),
    auto_shift=(bool, False, "raise the shift tenfold while shift*I + H~ does not "
                             "factor (at most 16 times)"),
    strict=(bool, False, "an unknown -pc_hss_* option is an error, not a warning"),
    distributed=(bool, False, "compress over the PC's ranks: each stores its subtree "
                              "(budget 0; automatic for a distributed operator)"),
)
_GETTERS = {int: "getInt", float: "getReal", str: "getString", bool: "getBool"}


def read(prefix, key):
    """(value, given) of -{prefix}pc_hss_{key}: the table's default when absent."""
    kind, default, _ = TABLE[key]
    opts = PETSc.Options(prefix)
    name = f"pc_hss_{key}"
    if opts.hasName(name):
        return getattr(opts, _GETTERS[kind])(name), True
    return default, False


def print_help(prefix, comm):
    """The table as -help prints it: ``-pc_hss_tol <now>: help (default ...)``."""
    p = prefix or ""
    lines = ["HSSPC options (hsspetsc, -pc_type python -pc_python_type "
             "hsspetsc.petsc.HSSPC) -----------"]
    for key, (kind, default, text) in TABLE.items():
        value, _ = read(prefix, key)
        lines.append(f"  -{p}pc_hss_{key} <{value}>: {text} (default {default})")
    PETSc.Sys.Print("\n".join(lines), comm=comm)


def unknown_names(prefix):
    """Options -{prefix}pc_hss_* in the database that HSSPC does not know, each with
    its closest known name (or None)."""
    p = prefix or ""
    known = set(TABLE)
    out = []
    for name in PETSc.Options().getAll():
        if not name.startswith(p + "pc_hss_"):
            continue
        key = name[len(p) + len("pc_hss_"):]
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            out.append((name, f"{p}pc_hss_{close[0]}" if close else None))
    return out


def check_spelling(prefix, comm):
    """Report unknown -pc_hss_* names: once, on rank 0, or raise under -pc_hss_strict."""
    bad = unknown_names(prefix)
    if not bad:
        return
    msg = "; ".join(f"-{n} is not an HSSPC option" + (f" (did you mean -{c}?)" if c else "")
                    for n, c in bad)
    if read(prefix, "strict")[0]:
        raise ValueError(f"HSSPC: {msg}.")
    PETSc.Sys.Print(f"WARNING HSSPC: {msg}; it is ignored (-pc_hss_strict makes this an "
                    f"error).", comm=comm)
