"""The one-process case of hsspetsc.Comm (the ranks' cases run under mpiexec in
tests/mpi/test_mpi_faults.py)."""
import numpy as np
import pytest

from hsspetsc import CollectiveError, Comm


def test_one_process_raises_errors_as_they_are_and_gathers_its_value():
    c = Comm.of(None)
    assert (c.size, c.rank) == (1, 0) and Comm.of(c) is c
    assert c.gather(7) == [7]
    with pytest.raises(KeyError):
        c.run(lambda: {}["missing"])
    assert isinstance(c.failed, KeyError)
    assert c.sum(np.arange(3.0)).tolist() == [0.0, 1.0, 2.0]
    assert c.max(2.5) == 2.5 and c.min(-1) == -1.0
    assert c.allgatherv(np.arange(4), [4], np.int64).tolist() == [0, 1, 2, 3]
    assert c.together(lambda: 5) == 5
    assert issubclass(CollectiveError, RuntimeError)


def test_an_error_already_agreed_is_not_agreed_again():
    c = Comm.of(None)
    err = CollectiveError("rank 1 of 2 failed: X")
    with pytest.raises(CollectiveError) as e:
        c.run(lambda: (_ for _ in ()).throw(err))
    assert e.value is err and c.failed is err


@pytest.mark.parametrize("bad", [3, "world", object()])
def test_not_a_communicator_is_a_clear_error(bad):
    with pytest.raises(TypeError, match="mpi4py or PETSc communicator"):
        Comm.of(bad)
