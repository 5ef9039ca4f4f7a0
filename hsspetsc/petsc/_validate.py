"""Check chosen skeleton ranks against numerical ranks (SLEPc SVD, trlanczos)."""
import numpy as np
from petsc4py import PETSc

from ..sources import as_source


def _outside_rows(H, a):
    """Indices whose interaction with node a goes through a's skeleton: outside a
    and outside the leaves near a's leaves."""
    tree = H.tree
    lev = tree.level_of(a)
    shift = tree.n_levels - lev
    pos = a - (2 ** lev - 1)
    first = tree.first_leaf
    under = np.arange(pos << shift, (pos + 1) << shift) + first
    excluded = set(under.tolist())
    for leaf in under:
        lo, hi = H.near_ptr[leaf], H.near_ptr[leaf + 1]
        excluded.update(H.near_src[lo:hi].tolist())
    keep = [b for b in range(first, tree.n_nodes) if b not in excluded]
    return np.concatenate([tree.indices(b) for b in keep] or [np.zeros(0, np.int64)])


def _singular_values(block, nsv, comm):
    """Largest ``nsv`` singular values of a dense block with SLEPc (trlanczos)."""
    from slepc4py import SLEPc
    m, n = block.shape
    A = PETSc.Mat().createDense((m, n), comm=comm)
    A.setUp()
    rs, re = A.getOwnershipRange()
    A.setValues(np.arange(rs, re, dtype=PETSc.IntType), np.arange(n, dtype=PETSc.IntType),
                block[rs:re])
    A.assemble()
    svd = SLEPc.SVD().create(comm=comm)
    try:
        svd.setOperators(A)
        svd.setType(SLEPc.SVD.Type.TRLANCZOS)
        svd.setDimensions(nsv=nsv)
        svd.setTolerances(tol=1e-12, max_it=1000)
        svd.setWhichSingularTriplets(SLEPc.SVD.Which.LARGEST)
        svd.solve()
        k = min(svd.getConverged(), nsv)
        return np.array([svd.getValue(i) for i in range(k)])
    finally:
        svd.destroy()
        A.destroy()


def validate_ranks(H, source, nodes=8, tol=None, comm=None, seed=0, max_entries=2 ** 26):
    """Compare chosen skeleton ranks with numerical ranks of the true block rows.

    For each node a, the singular values of K(a_out, a) (a_out: the rows outside a
    and its near leaves, which the skeleton must represent; entries from ``source``)
    are computed with SLEPc (trlanczos). ``svd_rank`` counts sigma_i > tol sigma_1
    (tol defaults to the compression tol).

    Parameters
    ----------
    nodes : int or list
        That many nodes sampled (smallest blocks first per level), or node ids.

    Returns
    -------
    list of dict
        node, level, chosen_rank, svd_rank, sigma_ratio (= sigma_{r+1} / sigma_1 at
        the chosen rank r; 0 when r is the full width), n_rows, n_cols, and
        saturated (True when every computed sigma was above tol, so svd_rank is a
        lower bound).
    """
    comm = PETSc.COMM_WORLD if comm is None else comm
    src = as_source(source, "validate_ranks")
    if src.n != H.n:
        raise ValueError(f"validate_ranks: H has N = {H.n} but the source has N = {src.n}.")
    tol = H.params["tol"] if tol is None else float(tol)
    tree = H.tree
    if isinstance(nodes, (int, np.integer)):
        rng = np.random.default_rng(seed)
        cand = np.arange(1, tree.n_nodes)
        ok = [a for a in cand
              if tree.node_size[a] * (H.n - tree.node_size[a]) <= max_entries]
        ok = np.array(ok, dtype=np.int64)
        if ok.size == 0:
            raise ValueError("validate_ranks: every block is larger than max_entries.")
        pick = np.sort(rng.choice(ok, min(int(nodes), ok.size), replace=False))
    else:
        pick = np.asarray(nodes, dtype=np.int64)
        if pick.size and (pick.min() < 1 or pick.max() >= tree.n_nodes):
            raise ValueError(f"validate_ranks: nodes must be in [1, {tree.n_nodes}).")
    records = []
    for a in pick:
        a = int(a)
        rows = _outside_rows(H, a)
        cols = tree.indices(a)
        if rows.size * cols.size > max_entries:
            raise ValueError(f"validate_ranks: node {a} needs a {rows.size} x {cols.size} "
                             f"block (> max_entries = {max_entries}).")
        chosen = int(H.rank[a])
        width = min(rows.size, cols.size)
        if width == 0:
            continue
        nsv = min(width, max(2 * chosen + 10, chosen + 20))
        block = src.entries(cols, rows)      # |a| x |out|: fewer rows, same sigmas
        s = _singular_values(block, nsv, comm)
        svd_rank = int(np.sum(s > tol * s[0])) if s.size else 0
        ratio = float(s[chosen] / s[0]) if chosen < s.size else 0.0
        records.append({"node": a, "level": tree.level_of(a), "chosen_rank": chosen,
                        "svd_rank": svd_rank, "sigma_ratio": ratio,
                        "n_rows": int(rows.size), "n_cols": int(cols.size),
                        "saturated": bool(svd_rank == s.size and s.size < width)})
    return records


def format_rank_table(records):
    """The records of :func:`validate_ranks` as a text table."""
    lines = [f"{'node':>6} {'level':>5} {'block':>13} {'chosen':>7} {'svd':>7} "
             f"{'s_r+1/s_1':>10}"]
    for r in records:
        svd = f"{'>=' if r['saturated'] else ''}{r['svd_rank']}"
        lines.append(f"{r['node']:>6} {r['level']:>5} {r['n_rows']:>6}x{r['n_cols']:<6} "
                     f"{r['chosen_rank']:>7} {svd:>7} {r['sigma_ratio']:>10.2e}")
    return "\n".join(lines)
