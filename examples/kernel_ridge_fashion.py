"""Kernel ridge classification of Fashion-MNIST with hsspetsc's KernelRidge.

    OMP_NUM_THREADS=2 .venv/bin/python examples/kernel_ridge_fashion.py [--n 20000]
        [--method hss|pcg|dense|auto] [--tol 30]

Gaussian kernel on the 784 pixels (in [0, 1], bandwidth 5), ridge alpha = 0.1,
one-hot targets: the predicted class is the largest of the 10 outputs. Fits the
first N training images (default 5000) by the chosen solver and by the dense
Cholesky where it fits, and prints the time, the test accuracy on 2000 test
images, and what the solver did (its SolveInfo). bench/bench_krr.py compares more
solvers (Nystrom models, scikit-learn) at N = 5000, 20000 and 60000.
"""
import argparse
import time
import warnings

import numpy as np

from hsspetsc.kernel_ridge import KernelRidge
from hsspetsc.mlp.data import load_fashion_mnist


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--method", default="hss", choices=["auto", "hss", "pcg", "dense"])
    ap.add_argument("--tol", type=float, default=30.0,
                    help="share c of alpha for the HSS compression")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    args = ap.parse_args()
    X, y = load_fashion_mnist("train", args.n)
    Xt, yt = load_fashion_mnist("test", args.n_test)
    X = X.reshape(len(X), -1).astype(np.float64)
    Xt = Xt.reshape(len(Xt), -1).astype(np.float64)
    Y = np.eye(10)[y]
    runs = [(args.method, args.tol)]
    if not args.no_dense and 8.0 * args.n ** 2 < 4 * 2 ** 30 and args.method != "dense":
        runs.append(("dense", None))
    print(f"Fashion-MNIST, N = {args.n} training images, {args.n_test} test images, "
          f"Gaussian kernel h = 5, alpha = 0.1")
    for method, tol in runs:
        est = KernelRidge(kernel="gaussian", bandwidth=5.0, alpha=0.1, method=method,
                          tol=tol, cg_tol=1e-3)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est.fit(X, Y)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        acc = float(np.mean(np.argmax(est.predict(Xt), axis=1) == yt))
        t_pred = time.perf_counter() - t
        print(f"{method:>6}: fit {t_fit:7.2f} s, predict {t_pred:5.2f} s, "
              f"test accuracy {acc:.4f}")
        print(f"        {est.fit_info_!r}")


if __name__ == "__main__":
    main()
