"""Is a Gauss-Newton Hessian hierarchical or globally low rank? (not a test)

    OMP_NUM_THREADS=2 .venv/bin/python bench/gn_structure.py [a|b]

Forms H of a bench_gn_compare net densely (a: N = 4192, ~30 s; b: N = 16576, a few
minutes and 2.2 GB) in ``neuron_order`` and prints, per target error eps_F:
- r_opt: the rank of the best low-rank approximation (eigenvalues of H) -- what
  RSVD/Nystrom approach, at work r_opt N;
- k_top: the eps-rank of the root's off-diagonal block H(left, right) -- every HSS
  of this tree needs it at the root, and the sketch needs >= k_top products;
- HODLR %: storage of the ideal HODLR (exact SVD of every sibling block truncated
  at one absolute threshold tuned to eps_F), as a share of N^2.
When k_top ~ r_opt the matrix is globally low rank: no tree helps, and HSS cannot
beat the low-rank baselines at equal work. Writes gn_structure_<net>.json.
"""
import os
import sys
import time

import numpy as np
from _results import write_results
from bench_gn_compare import NETS, adam_train

from hsspetsc.mlp import MLP, GaussNewton, load

HERE = os.path.dirname(os.path.abspath(__file__))


def sibling_spectra(A, leaf):
    """Singular values of every sibling block of the bisection tree (and the leaf
    sizes): [(s, rows + cols)], leaf entries."""
    n = A.shape[0]
    blocks, leaf_entries = [], 0
    stack = [(0, n)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= leaf:
            leaf_entries += (hi - lo) ** 2
            continue
        mid = (lo + hi) // 2
        blocks.append((np.linalg.svd(A[lo:mid, mid:hi], compute_uv=False), hi - lo))
        stack += [(lo, mid), (mid, hi)]
    return blocks, leaf_entries


def hodlr(blocks, leaf_entries, n, tau, fro):
    """(eps_F, storage share) of the ideal HODLR at absolute threshold tau."""
    err2, store = 0.0, leaf_entries
    for s, width in blocks:
        k = int(np.sum(s > tau))
        err2 += 2 * float(np.sum(s[k:] ** 2))
        store += 2 * k * width
    return np.sqrt(err2) / fro, store / n ** 2


def main():
    key = sys.argv[1] if len(sys.argv) > 1 else "a"
    data, n, widths = NETS[key]
    X, _ = load(data, n)
    model = MLP(widths, activation="tanh", loss="mse", seed=0)
    adam_train(model, X, X)
    G = GaussNewton(model, X, X)
    N = G.n
    t = time.perf_counter()
    perm = G.neuron_order()
    H = G.matmat(np.eye(N)[:, perm])[perm]
    H = 0.5 * (H + H.T)
    w = np.sort(np.abs(np.linalg.eigvalsh(H)))[::-1]
    fro = float(np.sqrt(np.sum(w ** 2)))
    tail = np.sqrt(np.maximum(fro ** 2 - np.cumsum(w ** 2), 0.0)) / fro
    s_top = np.linalg.svd(H[:N // 2, N // 2:], compute_uv=False)
    top_tail = np.sqrt(np.maximum(np.sum(s_top ** 2) - np.cumsum(s_top ** 2), 0.0)) / fro
    blocks, leaf_entries = sibling_spectra(H, 64)
    rows = []
    print(f"net ({key}) {widths}: N = {N} ({time.perf_counter() - t:.0f} s)")
    print(f"{'eps_F':>8} {'r_opt':>6} {'r_opt %K':>9} {'k_top':>6} {'HODLR eps':>10} "
          f"{'HODLR %':>8}")
    for eps in (1e-1, 3e-2, 1e-2, 3e-3):
        r_opt = int(np.argmax(tail <= eps)) + 1
        k_top = int(np.argmax(top_tail <= eps / np.sqrt(2))) + 1
        # threshold: bisect on log tau until the HODLR error is just below eps
        lo, hi = np.log(w[-1] + 1e-300), np.log(w[0])
        best = None
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            e, st = hodlr(blocks, leaf_entries, N, np.exp(mid), fro)
            if e <= eps:
                best, lo = (e, st), mid
            else:
                hi = mid
        e_h, st_h = best if best else (float("nan"), float("nan"))
        rows.append({"eps_F": eps, "r_opt": r_opt, "r_opt_percent_K": 100 * r_opt / N,
                     "k_top": k_top, "hodlr_eps": e_h, "hodlr_percent": 100 * st_h})
        print(f"{eps:>8.0e} {r_opt:>6} {100 * r_opt / N:>8.2f}% {k_top:>6} {e_h:>10.2e} "
              f"{100 * st_h:>7.2f}%", flush=True)
    out = os.path.join(HERE, f"gn_structure_{key}.json")
    write_results(out, rows, net=key, widths=widths, N=N)


if __name__ == "__main__":
    main()
