"""Thread counts for the OpenMP kernels, and BLAS held to one thread around them."""
import os

from threadpoolctl import ThreadpoolController, threadpool_limits

from .validation import check_int

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
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


_rank_limits = None     # the threadpoolctl limits set by threads_per_rank (kept alive)


def threads_per_rank(comm):
    """Threads for each rank of ``comm`` (a :class:`hsspetsc.mpi.comm.Comm`) when
    the user has not chosen: with OMP_NUM_THREADS unset, every rank gets (cores it
    may run on) // (ranks on its node), at least 1, for the OpenMP kernels
    (OMP_NUM_THREADS is set for this process) and for the BLAS and OpenMP pools
    already loaded (threadpoolctl). Ranks x threads x BLAS threads would otherwise
    oversubscribe the cores many times over. Returns (threads, chosen here)."""
    global _rank_limits
    # rank 0 decides for all (every rank then enters the same collectives)
    if comm.bcast(bool(os.environ.get("OMP_NUM_THREADS", "").strip())):
        return effective_n_threads(), False
    local_ranks = comm.ranks_on_node()
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else (os.cpu_count() or 1))
    n = max(1, cores // local_ranks)
    os.environ["OMP_NUM_THREADS"] = str(n)
    _rank_limits = threadpool_limits(limits=n)
    return n, True
