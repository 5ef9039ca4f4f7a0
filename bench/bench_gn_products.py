"""Gauss-Newton block products H V: the forward pass with a contiguous copy of each
layer's tangent weights against the earlier strided view (not a test).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_gn_products.py [--rounds 5]

``GaussNewton.matmat`` works on chunks of the columns (a chunk keeps its
temporaries near 8 MB, so with many samples a chunk is one column). A chunk of a
wider block, or a single column, is a strided view; reshaped without a copy it sent
the forward pass's GEMM to numpy's own loop instead of BLAS. "before" is that forward
pass (kept here as it was), "after" the package's. Both run in one process, taking
turns; medians in seconds, ratio = after / before, and the largest difference
relative to the largest entry of H V. Writes bench_gn_products.json.
"""
import argparse
import json
import os
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from hsspetsc.mlp.data import load  # noqa: E402
from hsspetsc.mlp.gauss_newton import GaussNewton  # noqa: E402
from hsspetsc.mlp.model import MLP, act_deriv  # noqa: E402

WIDTHS = [784, 100, 50, 25, 50, 100, 784]


def jvp_block_before(self, V):
    """The forward pass of the earlier commit (the tangent weights reshaped in place)."""
    model = self.model
    k, n = V.shape[1], self.n_samples
    da = None
    for l, (W, _) in enumerate(self._layers):
        w0, b0, e0 = model.layer_slices[l]
        o, i = W.shape
        dW = V[w0:b0].T.reshape(k * o, i)
        dz = (self._acts[l] @ dW.T).reshape(n, k, o).transpose(1, 0, 2)
        dz += V[b0:e0].T[:, None, :]
        if da is not None:
            dz += (da.reshape(k * n, i) @ W.T).reshape(k, n, o)
        if self.ce and l == model.n_layers - 1:
            return dz
        da = act_deriv(model.activations[l], self._zs[l], self._acts[l + 1])[None] * dz
    return da


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "bench_gn_products.json"))
    a = ap.parse_args()
    X, _ = load("fashion-mnist", n=1000)
    model = MLP(WIDTHS, activation="sigmoid", output="sigmoid", loss="mse", seed=0)
    rows = []
    for n in (64, 1000):
        after = GaussNewton(model, X[:n], X[:n])
        before = GaussNewton(model, X[:n], X[:n])
        before._jvp_block = types.MethodType(jvp_block_before, before)
        for k in (1, 8, 64):
            V = np.random.default_rng(k).standard_normal((model.n_params, k))
            times = {"before": [], "after": []}
            out = {}
            for _ in range(a.rounds):
                for name, H in (("before", before), ("after", after)):
                    t = time.perf_counter()
                    out[name] = H.matmat(V)
                    times[name].append(time.perf_counter() - t)
            med = {key: float(np.median(v)) for key, v in times.items()}
            diff = float(np.abs(out["after"] - out["before"]).max()
                         / np.abs(out["before"]).max())
            rows.append({"n": n, "k": k, "before": med["before"], "after": med["after"],
                         "ratio": med["after"] / med["before"], "rel_diff": diff})
            print(f"n {n:5d} k {k:3d}: before {med['before']:.4g} s, after "
                  f"{med['after']:.4g} s, ratio {med['after'] / med['before']:.3f}, "
                  f"difference {diff:.1e}", flush=True)
    res = {"command": "OMP_NUM_THREADS=2 .venv/bin/python bench/bench_gn_products.py "
                      + " ".join(sys.argv[1:]),
           "net": WIDTHS, "N": model.n_params, "rounds": a.rounds, "rows": rows}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
