"""Compression accuracy against dense references."""
import numpy as np
import pytest
from helpers import assert_close

import hsspetsc

TOLS = [1e-2, 1e-4, 1e-6, 1e-8]


def _fro_error(H, K):
    return np.linalg.norm(H.to_dense() - K) / np.linalg.norm(K)


@pytest.mark.parametrize("which", ["k02", "k05", "gauss3d"])
def test_error_tracks_tol(request, which):
    src = request.getfixturevalue(which)
    K = src.to_dense()
    errs = []
    for tol in TOLS:
        H = hsspetsc.compress(src, leaf_size=64, max_rank=512, tol=tol, seed=0)
        err = _fro_error(H, K)
        assert not H.truncated
        # within a small factor of tol, and never far below round-off
        assert err <= 10 * tol, (tol, err)
        errs.append(err)
        eps2 = hsspetsc.relative_error(H, src, nrows=50)["eps2"]
        assert eps2 <= 10 * tol
    assert errs[-1] < errs[0]


@pytest.mark.parametrize("which", ["k02", "gauss3d"])
def test_full_rank_is_round_off(request, which):
    src = request.getfixturevalue(which)
    H = hsspetsc.compress(src, leaf_size=64, max_rank=4096, tol=1e-15)
    assert _fro_error(H, src.to_dense()) < 1e-12


@pytest.mark.parametrize("distance", ["angle", "kernel", "geometric"])
def test_all_distances_meet_tol(k02, distance):
    tol = 1e-5
    H = hsspetsc.compress(k02, leaf_size=64, tol=tol, distance=distance)
    assert _fro_error(H, k02.to_dense()) <= 10 * tol


def test_budget_lowers_error_on_the_same_ranks(gauss3d):
    K = gauss3d.to_dense()
    # tol tiny and a small max_rank: every node has rank exactly max_rank
    kw = dict(leaf_size=64, max_rank=12, tol=1e-12, spd=False)
    with pytest.warns(RuntimeWarning, match="rank cap"):
        H0 = hsspetsc.compress(gauss3d, budget=0.0, **kw)
    with pytest.warns(RuntimeWarning, match="rank cap"):
        H1 = hsspetsc.compress(gauss3d, budget=0.1, **kw)
    assert np.all(H0.rank[1:] == 12) and np.all(H1.rank[1:] == 12)
    e0, e1 = _fro_error(H0, K), _fro_error(H1, K)
    assert e1 < 0.8 * e0
    s0, s1 = H0.stats(), H1.stats()
    assert s1["near_fraction"] > s0["near_fraction"]
    assert len(H0.truncated) > 0          # capped nodes are reported ...
    t = H0.truncated[0]
    assert t["rank"] == 12 and t["achieved"] >= 1e-12   # ... with the achieved error


def test_dense_ndarray_and_entry_source_give_the_same_matrix(dense_spd):
    K = dense_spd
    H1 = hsspetsc.compress(K, leaf_size=32, tol=1e-6)
    src = hsspetsc.EntrySource(K.shape[0], lambda I, J: K[np.ix_(I, J)], np.diag(K))
    H2 = hsspetsc.compress(src, leaf_size=32, tol=1e-6)
    x = np.random.default_rng(0).standard_normal(K.shape[0])
    assert np.array_equal(H1 @ x, H2 @ x)
    assert np.linalg.norm(H1 @ x - K @ x) <= 10 * 1e-6 * np.linalg.norm(K @ x)


def test_single_leaf_matrix_is_exact(dense_spd):
    K = dense_spd[:40, :40]
    H = hsspetsc.compress(K, leaf_size=40)
    assert H.n_levels == 0
    assert_close(H.to_dense(), K, rtol=1e-12)


def test_stats_and_repr_agree_with_the_storage(k02):
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-4, budget=0.05)
    s = H.stats()
    n = k02.n
    for key in ("N", "levels", "rank_min", "rank_mean", "rank_max", "stored_bytes",
                "entries_fraction", "near_fraction", "time"):
        assert key in s
    assert s["N"] == n and s["levels"] == H.n_levels
    assert set(s["time"]) >= {"tree", "neighbors", "skeletons", "blocks", "total"}
    # near fraction = share of N^2 held by the near blocks (both triangles)
    near_entries = H.near_data.size * 2 - sum(
        int(H.tree.node_size[a]) ** 2 for a, b in H.near_pairs if a == b)
    assert s["near_fraction"] == pytest.approx(near_entries / n ** 2)
    # stored bytes = data + indices, and the data is what the ranks imply
    assert s["data_bytes"] == s["rank_implied_bytes"]
    assert s["data_bytes"] <= s["stored_bytes"] <= 2 * s["rank_implied_bytes"]
    assert 0 < s["entries_fraction"]
    ranks = H.rank[1:]
    assert s["rank_max"] == ranks.max() and s["rank_min"] == ranks.min()
    text = repr(H)
    for row in s["ranks_by_level"]:
        assert f"{row['rank_max']:>5}" in text
    assert f"levels={H.n_levels}" in text


def test_same_seed_is_bitwise_identical(k05):
    H1 = hsspetsc.compress(k05, leaf_size=64, tol=1e-5, seed=7)
    H2 = hsspetsc.compress(k05, leaf_size=64, tol=1e-5, seed=7)
    assert np.array_equal(H1.perm, H2.perm)
    assert np.array_equal(H1.proj, H2.proj)
    assert np.array_equal(H1.far_data, H2.far_data)
    x = np.random.default_rng(1).standard_normal((k05.n, 3))
    assert np.array_equal(H1 @ x, H2 @ x)
    H3 = hsspetsc.compress(k05, leaf_size=64, tol=1e-5, seed=8)
    assert not np.array_equal(H1.perm, H3.perm)


def test_a_missed_tol_is_reported_at_the_users_call():
    """The warning of a missed tol names the line that called compress, refresh or
    compress_sketch (it pointed past the user's frame before)."""
    import warnings
    K = hsspetsc.gallery.testsuite("K02", 1024)
    calls = {"compress": lambda: hsspetsc.compress(K, tol=1e-5, leaf_size=32, max_rank=2),
             "compress_sketch": lambda: hsspetsc.compress_sketch(
                 K, samples=40, tol=1e-5, leaf_size=32, max_rank=2)}
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            H = call()
            hsspetsc.refresh(H, K)
        mine = [w for w in got if issubclass(w.category, RuntimeWarning)]
        assert len(mine) == 2, (name, [str(w.message) for w in got])
        assert str(mine[0].message).startswith(f"{name}: ")
        assert str(mine[1].message).startswith("refresh: ")
        assert all(w.filename == __file__ for w in mine), [w.filename for w in mine]
