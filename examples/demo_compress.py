"""hsspetsc demo: compress a test-suite matrix and a kernel matrix, show the level
table, the accuracy, and the matvec speed-up over dense BLAS.

    OMP_NUM_THREADS=2 .venv/bin/python examples/demo_compress.py   (or: make demo-compress)

It draws each compressed matrix (block structure coloured by rank) to
demo_compress_<name>.png.
"""
import time

import numpy as np

import hsspetsc
from hsspetsc.util.timing import median_time


def show(title, name, src, **kw):
    print(f"\n=== {title} ===", flush=True)
    t = time.perf_counter()
    H = hsspetsc.compress(src, verbose=True, **kw)
    t_comp = time.perf_counter() - t
    err = hsspetsc.relative_error(H, src, exact_max_n=0)
    K = src.to_dense()
    W = np.random.default_rng(0).standard_normal((src.n, 16))
    t_h = median_time(lambda: H @ W)
    t_d = median_time(lambda: K @ W)
    print(f"compression {t_comp:.2f} s   eps2 = {err['eps2']:.2e} (tol {kw.get('tol', 1e-5):.0e})")
    print(f"16-vector matvec: HSS {1e3 * t_h:.2f} ms, dense BLAS {1e3 * t_d:.2f} ms, "
          f"speed-up {t_d / t_h:.1f}x")
    H.plot(f"demo_compress_{name}.png", title=title)
    print(f"wrote demo_compress_{name}.png")


def main():
    show("K02: inverse squared 2-D Poisson, N = 16384", "K02",
         hsspetsc.gallery.testsuite("K02", 16384), leaf_size=128, tol=1e-5)
    X = np.random.default_rng(0).random((16384, 3))
    show("Gaussian kernel on 16384 points in the unit cube (h = 0.2)", "gauss3d",
         hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2, shift=1e-2),
         leaf_size=128, tol=1e-5, distance="geometric")


if __name__ == "__main__":
    main()
