"""Thread counts for the OpenMP kernels, and BLAS held to one thread around them."""
import os

from ._validation import check_int

_controller = None


def effective_n_threads(n_threads=None, where="hsspetsc"):
    """Threads for OpenMP kernels: the argument, else OMP_NUM_THREADS, else all cores."""
    if n_threads is not None:
        return check_int(n_threads, "n_threads", where, lo=1)
    env = os.environ.get("OMP_NUM_THREADS", "")
    try:
        value = int(env.split(",")[0])
        if value >= 1:
            return value
    except ValueError:
        pass
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def blas_single_thread():
    """Context holding BLAS to one thread: kernels call BLAS inside ``prange``, and
    OpenBLAS threads on top of OpenMP threads would oversubscribe the cores."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
