"""The accuracy and definiteness contract: tol met or reported, the estimate honest,
an SPD source gives an H~ that factors at every positive shift, zero rows exact."""
import warnings

import numpy as np
import pytest
from helpers import assert_close

import hsspetsc
from hsspetsc.mlp import MLP, GaussNewton


def _shell(n, seed=0):
    """Points on a thin spherical shell: a 2-D manifold in 3-D."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    return v * (1 + 0.01 * rng.random((n, 1)))


def _sources(n=2048):
    X = np.random.default_rng(1).random((n, 3))
    return {
        "K02": hsspetsc.gallery.testsuite("K02", n if n != 2048 else 2025),
        "K05": hsspetsc.gallery.testsuite("K05", n),
        "gauss3d": hsspetsc.gallery.kernel_matrix(X, "gaussian", bandwidth=0.2),
        "laplace-shell": hsspetsc.gallery.kernel_matrix(_shell(n), "laplace",
                                                        bandwidth=0.3),
    }


def _fro(H, K):
    return np.linalg.norm(H.to_dense() - K) / np.linalg.norm(K)


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return f(*args, **kwargs)


@pytest.mark.parametrize("name", ["K02", "K05", "gauss3d", "laplace-shell"])
def test_adaptive_ranks_meet_tol_without_a_warning(name):
    src = _sources()[name]
    for tol in (1e-2, 1e-4, 1e-6, 1e-8):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", RuntimeWarning)
            H = hsspetsc.compress(src, leaf_size=64, tol=tol)
        eps2 = hsspetsc.relative_error(H, src, nrows=100, exact_max_n=0)["eps2"]
        assert eps2 <= 10 * tol, (name, tol, eps2)
        # met: nothing to say -- unless H~ would outgrow twice the dense matrix
        # (K05 at 1e-8: nearly full rank), or outgrows the dense matrix, which is said
        for x in w:
            msg = str(x.message)
            assert "rank cap (memory)" in msg or "more than the dense matrix" in msg, msg
            if "rank cap (memory)" in msg:
                assert H.stats()["data_bytes"] > 0.5 * 16 * src.n ** 2
            if "more than the dense matrix" in msg:
                assert H.stats()["stored_bytes"] > H.stats()["dense_bytes"]
        assert bool(H.truncated) == any("rank cap" in str(x.message) for x in w)


@pytest.mark.parametrize("case", ["entries", "entries-capped", "sketch"])
def test_error_estimate_is_within_3x_of_the_measured_error(case):
    X = np.random.default_rng(2).random((1500, 2))
    src = hsspetsc.gallery.kernel_matrix(X, "matern32", bandwidth=0.3, shift=1e-3)
    K = src.to_dense()
    for tol in (1e-3, 1e-6):
        if case == "entries":
            H = hsspetsc.compress(src, leaf_size=64, tol=tol)
        elif case == "entries-capped":
            H = _quiet(hsspetsc.compress, src, leaf_size=64, tol=tol, max_rank=10)
        else:
            H = _quiet(hsspetsc.compress_sketch, K, samples=200, leaf_size=64, tol=tol,
                       order="angle", probes=16)
        est, err = H.stats()["error_estimate"], _fro(H, K)
        assert err / 3 <= est <= 3 * err, (case, tol, est, err)


def test_the_warning_names_the_remedy_that_applies(gauss3d):
    with pytest.warns(RuntimeWarning, match=r"rank cap \(max_rank\).*raise max_rank"):
        H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-8, max_rank=8)
    assert H.truncated and all(t["cause"] == "max_rank" for t in H.truncated)
    assert H.stats()["error_estimate"] > 10 * 1e-8
    with pytest.warns(RuntimeWarning, match=r"rank cap \(memory\).*raise memory"):
        H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-10, memory=2.5e6)
    assert H.truncated and H.truncated[0]["cause"] == "memory"
    assert H.stats()["data_bytes"] <= 2.5e6
    with pytest.warns(RuntimeWarning, match="raise samples"):
        hsspetsc.compress_sketch(gauss3d.to_dense(), samples=20, leaf_size=64, tol=1e-8,
                                 order="angle")


def _spd_sources():
    """A dozen SPD sources, compressed coarsely so that H~ before compensation is
    indefinite for most of them."""
    rng = np.random.default_rng(0)
    out = {name: hsspetsc.gallery.testsuite(name, 1024)
           for name in ("K02", "K03", "K04", "K06", "K07", "K08", "K09", "K10", "K11",
                        "K12", "COV")}
    out["gauss6d"] = hsspetsc.gallery.kernel_matrix(rng.standard_normal((1024, 6)),
                                                    "gaussian", bandwidth=1.0)
    X, _ = hsspetsc.mlp.load_digits(150)
    out["gauss-newton"] = GaussNewton(MLP([64, 10, 64], activation="tanh", seed=0), X, X)
    return out


@pytest.mark.parametrize("name", list(_spd_sources()))
def test_spd_source_factors_at_every_positive_shift(name):
    src = _spd_sources()[name]
    H0 = _quiet(hsspetsc.compress, src, leaf_size=64, tol=1e-3, max_rank=12, spd=False)
    H = _quiet(hsspetsc.compress, src, leaf_size=64, tol=1e-3, max_rank=12)
    s = H.stats()
    delta = s["compensation"]
    assert not s["indefinite_source"]
    K0 = H0.to_dense()
    Kt = H.to_dense()
    assert_close(Kt, K0 + delta * np.diag(src.diagonal() > 0), rtol=1e-12)
    ev = np.linalg.eigvalsh(Kt)
    assert ev.min() >= -1e-11 * ev.max()             # H~ is PSD
    ev0 = np.linalg.eigvalsh(K0)                     # delta is near the smallest one
    assert delta <= 1.6 * max(-ev0.min(), 0.0) + 1e-11 * ev.max()
    H.norm()
    b = np.random.default_rng(1).standard_normal(H.n)
    for rel in (1e-8, 1e-6, 1e-4, 1e-2, 1.0):
        F = H.factorize(rel, relative=True)
        x = F.solve(b)
        res = np.linalg.norm(F.shift * x + Kt @ x - b) / np.linalg.norm(b)
        assert res < 1e-14 / rel, (rel, res)
    # the uncompensated matrix really was indefinite when a compensation was made
    if delta > 0:
        assert ev0.min() < 0
        with pytest.raises(hsspetsc.FactorizationError, match="spd=False"):
            H0.factorize(1e-3 * delta)


def test_zero_rows_stay_exactly_zero():
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(600))
    K = np.exp(-np.abs(x[:, None] - x[None, :]) / 0.2)
    zero = rng.random(600) < 0.1
    K[zero] = 0.0
    K[:, zero] = 0.0
    H = hsspetsc.compress(K, leaf_size=40, tol=1e-7)
    D = H.to_dense()
    assert np.all(D[zero] == 0) and np.all(D[:, zero] == 0)
    assert _fro(H, K) <= 10 * 1e-7
    F = H.factorize(1e-10)
    b = rng.standard_normal(600)
    assert_close(F.solve(b)[zero], b[zero] / 1e-10, rtol=1e-10)


def test_shift_is_absolute_or_relative_and_never_negative(k02):
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-6)
    with pytest.raises(ValueError, match="'shift' parameter of factorize"):
        H.factorize(-1e-3)
    nrm = H.norm()
    assert nrm == pytest.approx(np.linalg.norm(H.to_dense(), 2), rel=1e-2)
    b = np.ones(k02.n)
    assert_close(H.factorize(0.01, relative=True).solve(b),
                 H.factorize(0.01 * nrm).solve(b), rtol=1e-12)


def test_low_precision_input_is_converted_with_a_warning(dense_spd):
    with pytest.warns(UserWarning, match="float32"):
        src = hsspetsc.DenseSource(dense_spd.astype(np.float32))
    assert src.A.dtype == np.float64
    with pytest.warns(UserWarning, match="float16"):
        hsspetsc.gallery.kernel_matrix(np.ones((5, 2), np.float16))
    cb = hsspetsc.EntrySource(300, lambda I, J: dense_spd[np.ix_(I, J)].astype(np.float32),
                              np.diag(dense_spd))
    with pytest.warns(UserWarning, match="callback result"):
        cb.entries([0, 1], [2])


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "matern32"])
def test_tune_picks_parameters_that_meet_tol(kernel):
    X = np.random.default_rng(4).random((4096, 3))
    src = hsspetsc.gallery.kernel_matrix(X, kernel, bandwidth=0.25, shift=1e-3)
    tol = 1e-5
    params = hsspetsc.tune(src, tol=tol)
    assert sum(r["chosen"] for r in params.report) == 1
    chosen = next(r for r in params.report if r["chosen"])
    assert params["leaf_size"] == chosen["leaf_size"] and params["tol"] == tol
    assert "chosen" in params.table() and len(params.table().splitlines()) == \
        2 + len(params.report)
    H = hsspetsc.compress(src, **params)
    assert hsspetsc.relative_error(H, src, nrows=100, exact_max_n=0)["eps2"] <= 10 * tol


def test_tune_bad_input(k02):
    with pytest.raises(ValueError, match="'tol' parameter of tune"):
        hsspetsc.tune(k02, tol=0)
    with pytest.raises(ValueError, match="'time' parameter of tune"):
        hsspetsc.tune(k02, time=-1)
