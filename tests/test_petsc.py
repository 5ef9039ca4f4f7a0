"""PETSc shell Mat, HSSPC from the options database, SLEPc rank validation."""
import numpy as np
import pytest
from helpers import assert_close

petsc4py = pytest.importorskip("petsc4py")
from petsc4py import PETSc  # noqa: E402

import hsspetsc  # noqa: E402
import hsspetsc.petsc as hp  # noqa: E402

SHIFT = 1e-4


@pytest.fixture(scope="module")
def k02_H(k02):
    return hsspetsc.compress(k02, leaf_size=64, tol=1e-7)


def _solve(A, prefix, options, P=None):
    """CG on A with the given options under a private prefix; returns
    (iterations, reason, x - w relative error, ksp's PC context or None)."""
    opts = PETSc.Options()
    for k, v in options.items():
        opts[prefix + k] = v
    ksp = PETSc.KSP().create(comm=A.getComm())
    b, x = A.createVecs()
    w = b.duplicate()
    try:
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(A, P if P is not None else A)
        ksp.setType("cg")
        ksp.setTolerances(rtol=1e-10, max_it=2000)
        ksp.setFromOptions()
        w.setArray(np.random.default_rng(0).standard_normal(w.getLocalSize()))
        A.mult(w, b)
        ksp.solve(b, x)
        x.axpy(-1.0, w)
        pc = ksp.getPC()
        ctx = None
        if pc.getType() == "python":
            c = pc.getPythonContext()
            ctx = type("Built", (), {"H": c.H, "F": c.F, "info": dict(c.info)})
        return ksp.getIterationNumber(), ksp.getConvergedReason(), x.norm() / w.norm(), ctx
    finally:
        for k in options:
            opts.delValue(prefix + k)
        ksp.destroy()
        for v in (b, x, w):
            v.destroy()


HSSPC_OPTS = {"pc_type": "python", "pc_python_type": "hsspetsc.petsc.HSSPC"}


def test_mat_mult_and_diagonal(k02, k02_H):
    A = hp.as_petsc_mat(k02_H, shift=0.5)
    try:
        x, y = A.createVecs()
        xs = np.random.default_rng(1).standard_normal(k02.n)
        x.setArray(xs)
        A.mult(x, y)
        assert_close(y.getArray(), k02_H @ xs + 0.5 * xs, rtol=1e-12)
        A.multTranspose(x, y)
        assert_close(y.getArray(), k02_H @ xs + 0.5 * xs, rtol=1e-12)
        d = A.getDiagonal()
        assert_close(d.getArray(), k02.diagonal() + 0.5, rtol=1e-12)
        assert A.getSize() == (k02.n, k02.n)
        for v in (x, y, d):
            v.destroy()
    finally:
        A.destroy()


def test_pc_from_options_cuts_iterations_on_k02(k02_H):
    A = hp.as_petsc_mat(k02_H, shift=SHIFT)
    try:
        it0, r0, e0, _ = _solve(A, "none_", {"pc_type": "none"})
        it1, r1, e1, ctx = _solve(A, "hss_", HSSPC_OPTS)
    finally:
        A.destroy()
    assert r0 > 0 and r1 > 0
    assert it1 <= 3 < it0 / 5
    assert e1 < 1e-6
    assert ctx.H is k02_H            # budget 0: the operator's H is reused
    assert "reused" in ctx.info["how"]


def test_pc_compresses_source_with_its_options(gauss3d):
    H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-7, budget=0.05)
    A = hp.as_petsc_mat(H, shift=1e-2, source=gauss3d)
    try:
        it0, r0, _, _ = _solve(A, "knone_", {"pc_type": "none"})
        it1, r1, e1, ctx = _solve(A, "khss_", {**HSSPC_OPTS, "pc_hss_tol": "1e-4",
                                               "pc_hss_leaf_size": "50"})
    finally:
        A.destroy()
    assert r0 > 0 and r1 > 0 and it1 < it0 / 3
    assert ctx.H is not H
    assert ctx.H.params["tol"] == 1e-4 and ctx.H.params["leaf_size"] == 50
    assert ctx.H.params["budget"] == 0.0
    assert ctx.F.shift == pytest.approx(1e-2)


def test_pc_on_assembled_dense_mat(dense_spd):
    K = dense_spd
    n = K.shape[0]
    A = PETSc.Mat().createDense((n, n), array=K.copy(), comm=PETSc.COMM_SELF)
    A.assemble()
    try:
        it0, r0, _, _ = _solve(A, "dnone_", {"pc_type": "none"})
        it1, r1, e1, ctx = _solve(A, "dhss_", {**HSSPC_OPTS, "pc_hss_leaf_size": "32",
                                               "pc_hss_tol": "1e-8"})
    finally:
        A.destroy()
    assert r1 > 0 and it1 <= 2 < it0
    np.testing.assert_allclose(ctx.H.to_dense(), K, atol=1e-6)


def test_pc_view_prints_what_it_built(k02_H):
    A = hp.as_petsc_mat(k02_H, shift=SHIFT)
    ksp = PETSc.KSP().create()
    try:
        ksp.setOperators(A)
        ksp.setType("cg")
        pc = ksp.getPC()
        pc.setType("python")
        pc.setPythonType("hsspetsc.petsc.HSSPC")
        ksp.setUp()
        viewer = PETSc.Viewer().createASCII("/dev/null")   # exercise the ASCII path
        pc.view(viewer)
        viewer.destroy()
        ctx = pc.getPythonContext()
        assert ctx.info["shift"] == SHIFT and ctx.F.n == k02_H.n
    finally:
        ksp.destroy()
        A.destroy()


def test_pc_setup_without_operators_is_an_error():
    pc = PETSc.PC().create()
    try:
        pc.setType("python")
        pc.setPythonType("hsspetsc.petsc.HSSPC")
        with pytest.raises(PETSc.Error):
            pc.setUp()
    finally:
        pc.destroy()


def test_pc_samples_option_sketches_an_assembled_mat(dense_spd):
    K = dense_spd
    n = K.shape[0]
    A = PETSc.Mat().createDense((n, n), array=K.copy(), comm=PETSc.COMM_SELF)
    A.assemble()
    try:
        it0, _, _, _ = _solve(A, "snone_", {"pc_type": "none"})
        it1, r1, e1, ctx = _solve(A, "ssk_", {**HSSPC_OPTS, "pc_hss_leaf_size": "32",
                                              "pc_hss_tol": "1e-8",
                                              "pc_hss_samples": "100"})
    finally:
        A.destroy()
    assert ctx.H.stats()["products"] == 100
    assert r1 > 0 and it1 <= 3 < it0 and e1 < 1e-8
    H = hsspetsc.compress_sketch(K, samples=100, leaf_size=32, tol=1e-8, order="angle",
                                 probes=0)
    assert_close(ctx.H.to_dense(), H.to_dense(), rtol=1e-12)


def test_pc_samples_option_needs_products(gauss3d):
    H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-3)
    A = hp.as_petsc_mat(H, shift=1e-2, source=gauss3d)    # kernel source: entries only
    try:
        with pytest.raises(ValueError, match="needs products"):
            _solve(A, "nop_", {**HSSPC_OPTS, "pc_hss_samples": "64"})
        with pytest.raises(ValueError, match="budget 0"):
            _solve(A, "nop2_", {**HSSPC_OPTS, "pc_hss_samples": "64",
                                "pc_hss_budget": "0.1"})
    finally:
        A.destroy()


@pytest.mark.parametrize("opt,value,match", [
    ("pc_hss_distance", "cosine", "'distance' parameter of HSSPC"),
    ("pc_hss_samples", "-3", "'samples' parameter of HSSPC"),
    ("pc_hss_tol", "-1", "'tol' parameter of HSSPC"),
    ("pc_hss_leaf_size", "1", "'leaf_size' parameter of HSSPC")])
def test_bad_option_value_is_a_clear_error(k02, k02_H, opt, value, match):
    A = hp.as_petsc_mat(k02_H, shift=SHIFT, source=k02)
    try:
        with pytest.raises(ValueError, match=match):
            _solve(A, "bad_", {**HSSPC_OPTS, opt: value})
    finally:
        A.destroy()


def test_options_without_source_are_refused_not_ignored(k02_H):
    A = hp.as_petsc_mat(k02_H, shift=SHIFT)
    try:
        with pytest.raises(ValueError, match="no source"):
            _solve(A, "nosrc_", {**HSSPC_OPTS, "pc_hss_tol": "1e-3"})
    finally:
        A.destroy()


def test_indefinite_operator_pc_reports_it(k02_H):
    A = hp.as_petsc_mat(k02_H, shift=-0.5)     # K has norm 1: indefinite
    try:
        with pytest.raises(ValueError, match=r"'shift' parameter of factorize.*-0\.5"):
            _solve(A, "ind_", HSSPC_OPTS)
        it, reason, _, _ = _solve(A, "indn_", {"pc_type": "none"})
        assert reason < 0 or it == 2000        # CG breaks down or stalls, no crash
    finally:
        A.destroy()


def test_mult_with_wrong_size_vec_is_an_error(k02_H):
    A = hp.as_petsc_mat(k02_H)
    x = PETSc.Vec().createSeq(10)
    y = PETSc.Vec().createSeq(10)
    try:
        with pytest.raises(PETSc.Error):
            A.mult(x, y)
    finally:
        for o in (A, x, y):
            o.destroy()


def test_as_petsc_mat_bad_input(k02_H, k05):
    with pytest.raises(TypeError, match="HSSMatrix"):
        hp.as_petsc_mat(np.eye(4))
    with pytest.raises(ValueError, match="source has N"):
        hp.as_petsc_mat(k02_H, source=hsspetsc.gallery.testsuite("K05", 300))


def test_validate_ranks_against_dense_svd(gauss3d):
    H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-6, budget=0.0)
    recs = hp.validate_ranks(H, gauss3d, nodes=[1, 4, 20])
    assert [r["node"] for r in recs] == [1, 4, 20]
    K = gauss3d.to_dense()
    for r in recs:
        a = r["node"]
        cols = H.tree.indices(a)
        rows = np.setdiff1d(np.arange(gauss3d.n), cols)
        s = np.linalg.svd(K[np.ix_(rows, cols)], compute_uv=False)
        assert r["svd_rank"] == int(np.sum(s > 1e-6 * s[0]))
        assert r["chosen_rank"] == H.rank[a]
        expect = s[H.rank[a]] / s[0] if H.rank[a] < s.size else 0.0
        assert r["sigma_ratio"] == pytest.approx(expect, rel=1e-6, abs=1e-14)
        # the ID keeps at least the numerical rank, and drops only below ~tol
        assert r["chosen_rank"] >= r["svd_rank"]
        assert r["sigma_ratio"] < 10 * 1e-6
    table = hp.format_rank_table(recs)
    assert str(recs[0]["svd_rank"]) in table
    assert hsspetsc.validate_ranks(H, gauss3d, nodes=[4])[0] == recs[1]


def test_pc_validate_option_checks_ranks(k02, k02_H):
    A = hp.as_petsc_mat(k02_H, shift=SHIFT, source=k02)
    try:
        its, reason, _, ctx = _solve(A, "val_", {**HSSPC_OPTS, "pc_hss_validate": "3"})
    finally:
        A.destroy()
    recs = ctx.info["validation"]
    assert len(recs) == 3 and reason > 0
    for r in recs:
        assert r["chosen_rank"] == k02_H.rank[r["node"]]
        assert r["sigma_ratio"] < 10 * k02_H.params["tol"]


def test_pc_with_mismatched_operator_sizes(k02_H, dense_spd):
    A = hp.as_petsc_mat(k02_H, shift=SHIFT)
    n = dense_spd.shape[0]
    P = PETSc.Mat().createDense((n, n), array=dense_spd.copy(), comm=PETSc.COMM_SELF)
    P.assemble()
    try:
        with pytest.raises((PETSc.Error, ValueError)):
            _solve(A, "mis_", HSSPC_OPTS, P=P)
    finally:
        A.destroy()
        P.destroy()


def test_pc_on_non_square_mat_is_an_error():
    P = PETSc.Mat().createDense((6, 4), array=np.ones((6, 4)), comm=PETSc.COMM_SELF)
    P.assemble()
    pc = PETSc.PC().create(comm=PETSc.COMM_SELF)
    try:
        pc.setOperators(P, P)
        pc.setType("python")
        pc.setPythonType("hsspetsc.petsc.HSSPC")
        with pytest.raises((PETSc.Error, ValueError), match="square|"):
            pc.setUp()
    finally:
        pc.destroy()
        P.destroy()


def test_pc_auto_tunes_the_compression(k02):
    """-pc_hss_auto: leaf size / neighbours chosen by tune; explicit options win."""
    A = hp.as_petsc_mat(hsspetsc.compress(k02, leaf_size=64, tol=1e-9, budget=0.02),
                        shift=SHIFT, source=k02)
    try:
        opts = dict(HSSPC_OPTS, pc_hss_auto="1", pc_hss_tol="1e-6", pc_hss_leaf_size="32")
        it, reason, err, ctx = _solve(A, "auto_", opts)
        itn, _, _, _ = _solve(A, "auton_", {"pc_type": "none"})
    finally:
        A.destroy()
    assert reason > 0 and it < itn / 3 and err < 1e-6
    p = ctx.H.params
    assert p["leaf_size"] == 32 and p["tol"] == 1e-6 and p["budget"] == 0.0
    assert p["neighbors"] in hsspetsc.tune.__globals__["NEIGHBORS"]


def test_pc_shift_aware_option_compresses_for_the_factor_shift(gauss3d):
    H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-7)
    lam = 1e-2
    A = hp.as_petsc_mat(H, shift=lam, source=gauss3d)
    try:
        it1, r1, e1, ctx = _solve(A, "sa_", {**HSSPC_OPTS, "pc_hss_shift_aware": "1"})
    finally:
        A.destroy()
    assert r1 > 0 and e1 < 1e-6
    assert ctx.H is not H
    assert ctx.H.params["shift"] == pytest.approx(lam) and ctx.H.params["tol"] == 0.5
    # condition number <= 3: CG to 1e-10 in a few dozen steps at most
    assert it1 <= 30
    assert ctx.H.stats()["stored_bytes"] < H.stats()["stored_bytes"]


def test_pc_shift_aware_needs_a_positive_shift(gauss3d):
    H = hsspetsc.compress(gauss3d, leaf_size=64, tol=1e-7)
    A = hp.as_petsc_mat(H, shift=0.0, source=gauss3d)
    try:
        with pytest.raises(Exception, match="positive shift"):
            _solve(A, "sa0_", {**HSSPC_OPTS, "pc_hss_shift_aware": "1"})
    finally:
        A.destroy()


class _KeptHSS(hp.HSSProvider):
    """A user's provider: one H~ kept for every solve, and the exact operator."""

    def __init__(self, K, H, shift):
        self.K, self.H, self.shift, self.calls = K, H, shift, 0
        self.hss_how = "the user's own H~"

    def mult(self, A, x, y):
        y.setArray(self.K @ x.getArray(readonly=True) + self.shift * x.getArray(readonly=True))

    def hss_matrix(self, params, explicit=()):
        self.calls += 1
        return self.H, self.shift


def test_hss_provider_hands_the_pc_its_matrix(k02, k02_H):
    K = np.asarray(k02.to_dense()) if hasattr(k02, "to_dense") else np.asarray(k02.A)
    ctx = _KeptHSS(K, k02_H, SHIFT)
    A = PETSc.Mat().createPython((k02.n, k02.n), ctx, comm=PETSc.COMM_SELF)
    A.setUp()
    try:
        its, reason, err, built = _solve(A, "prov_", HSSPC_OPTS)
    finally:
        A.destroy()
    assert ctx.calls == 1 and built.H is k02_H          # factored what it was given
    assert reason > 0 and err < 1e-6
    assert "the user's own H~" in built.info.get("how", "")
    # PCApply is one solve with shift*I + H~: CG on the exact operator converges
    # in a few iterations when H~ is this accurate
    assert its <= 10


class _BadProvider(hp.HSSProvider):
    def mult(self, A, x, y):
        x.copy(y)

    def hss_matrix(self, params, explicit=()):
        return np.eye(3), 0.0


def test_hss_provider_returning_no_hss_matrix_is_a_clear_error():
    A = PETSc.Mat().createPython((3, 3), _BadProvider(), comm=PETSc.COMM_SELF)
    A.setUp()
    try:
        with pytest.raises(Exception, match="not an HSSMatrix"):
            _solve(A, "badprov_", HSSPC_OPTS)
    finally:
        A.destroy()


def test_a_provider_must_implement_hss_matrix():
    class NoMatrix(hp.HSSProvider):
        pass
    with pytest.raises(TypeError, match="hss_matrix"):
        NoMatrix()
