"""Image data sets that ship with system packages (no downloads).

- ``digits``: scikit-learn's ``load_digits`` (1797 images, 8 x 8), Debian
  python3-sklearn;
- ``fashion-mnist``: Debian's dataset-fashion-mnist (IDX files under
  /usr/share/datasets/fashion-mnist, 60000 + 10000 images, 28 x 28), read here.

Both return float64 images flattened to rows and scaled to [0, 1], and int64 labels.
"""
import gzip
import os
import struct

import numpy as np

FASHION_DIR = os.environ.get("HSSPETSC_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
DATASETS = ("digits", "fashion-mnist")


class DatasetMissing(FileNotFoundError):
    """A data set's files are not installed."""


def read_idx(path):
    """Read an IDX file (optionally gzipped) into an ndarray (big-endian header)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}
    code, ndim = data[2], data[3]
    if code not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def load_fashion_mnist(split="train", n=None, path=FASHION_DIR):
    """(X, y): X (n, 784) float64 in [0, 1], y (n,) int64 labels 0..9."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"The 'split' parameter of load_fashion_mnist must be 'train' or "
                         f"'test'. Got {split!r} instead.")
    files = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        cands = [os.path.join(path, f"{prefix}-{kind}{ext}") for ext in (".gz", "")]
        found = [c for c in cands if os.path.exists(c)]
        if not found:
            raise DatasetMissing(f"Fashion-MNIST is not installed: no {cands[0]}. Install "
                                 f"Debian's dataset-fashion-mnist (make test/demo do) or set "
                                 f"HSSPETSC_FASHION_MNIST to a folder with the IDX files.")
        files.append(found[0])
    X = read_idx(files[0])
    y = read_idx(files[1]).astype(np.int64)
    if n is not None:
        X, y = X[:n], y[:n]
    return X.reshape(X.shape[0], -1).astype(np.float64) / 255.0, y


def load_digits(n=None):
    """(X, y): scikit-learn's 8 x 8 digits, X (n, 64) float64 in [0, 1]."""
    try:
        from sklearn.datasets import load_digits as _ld
    except ImportError as exc:
        raise DatasetMissing("the digits data set needs scikit-learn (Debian "
                             "python3-sklearn)") from exc
    d = _ld()
    X, y = d.data / 16.0, d.target.astype(np.int64)
    if n is not None:
        X, y = X[:n], y[:n]
    return X.astype(np.float64), y


def load(name, n=None, split="train"):
    """Load ``digits`` or ``fashion-mnist`` (first ``n`` samples)."""
    if name == "digits":
        X, y = load_digits()
    elif name == "fashion-mnist":
        X, y = load_fashion_mnist(split)
    else:
        raise ValueError(f"The 'name' parameter of load must be one of {DATASETS}. "
                         f"Got {name!r} instead.")
    if n is not None:
        if not isinstance(n, (int, np.integer)) or not 1 <= n <= X.shape[0]:
            raise ValueError(f"The 'n' parameter of load must be an int in the range "
                             f"[1, {X.shape[0]}] ({name} has {X.shape[0]} samples). "
                             f"Got {n!r} instead.")
        X, y = X[:n], y[:n]
    return X, y


def train_validation_split(name, n, n_val, clip=False):
    """(X, y, X_val, y_val): the first ``n`` samples of the training split for
    training and the next ``n_val`` for validation (disjoint by construction, and
    the training set is the one ``load(name, n)`` gives). With ``clip`` a
    validation set that does not fit is cut to the samples left (maybe none)."""
    size = dataset_size(name)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= size:
        raise ValueError(f"The 'n' parameter of load must be an int in the range "
                         f"[1, {size}] ({name} has {size} samples). Got {n!r} instead.")
    n_val = int(n_val)
    if clip:
        n_val = max(0, min(n_val, size - n))
    if n_val < 0 or n + n_val > size:
        raise ValueError(f"{name} has {size} samples: {n} for training and {n_val} "
                         f"for validation do not fit; lower --n or --validation.")
    X, y = load(name, n + n_val)              # one read for both
    return X[:n], y[:n], X[n:], y[n:]


def dataset_size(name):
    """Samples in the training split of ``name`` (without loading it)."""
    if name == "digits":
        return 1797
    if name == "fashion-mnist":
        return 60000
    raise ValueError(f"The 'name' parameter of load must be one of {DATASETS}. "
                     f"Got {name!r} instead.")
