"""Save/load, the compress command, pictures, -help and option spelling, a clean
exit whatever the user holds, and the README's code blocks as written."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import hsspetsc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=300, mpi=0):
    # OpenMPI as root, more ranks than cores, no core binding
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_hwloc_base_binding_policy="none")
    cmd = [sys.executable] + args
    if mpi:
        cmd = ["mpiexec", "--oversubscribe", "-n", str(mpi)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                       cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("budget", [0.0, 0.05])
def test_save_load_round_trip_is_bitwise(tmp_path, k02, budget):
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-6, budget=budget)
    path = H.save(tmp_path / "H")
    assert path.endswith(".npz") and os.path.exists(path)
    G = hsspetsc.load(path)
    W = np.random.default_rng(0).standard_normal((k02.n, 3))
    assert np.array_equal(H @ W, G @ W)
    assert G.params == H.params and G.stats()["error_estimate"] == H.stats()["error_estimate"]
    F = H.factorize(1e-3)
    F.save(tmp_path / "F.npz")
    F2 = hsspetsc.load(tmp_path / "F.npz")
    assert isinstance(F2, hsspetsc.HSSFactorization) and F2.shift == F.shift
    assert np.array_equal(F.solve(W), F2.solve(W))
    assert np.array_equal(F2.H.factorize(1e-2).solve(W), H.factorize(1e-2).solve(W))


def test_load_refuses_what_it_cannot_read(tmp_path, k02):
    with pytest.raises(FileNotFoundError):
        hsspetsc.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="not an hsspetsc file"):
        hsspetsc.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="no 'format' entry"):
        hsspetsc.load(tmp_path / "other.npz")
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-4)
    path = H.save(tmp_path / "H.npz")
    z = dict(np.load(path))
    z["version"] = np.int64(99)
    np.savez(tmp_path / "newer.npz", **z)
    with pytest.raises(ValueError, match="version 99"):
        hsspetsc.load(tmp_path / "newer.npz")
    del z["proj"]
    z["version"] = np.int64(1)
    np.savez(tmp_path / "partial.npz", **z)
    with pytest.raises(ValueError, match="incomplete"):
        hsspetsc.load(tmp_path / "partial.npz")
    data = open(path, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError):
        hsspetsc.load(tmp_path / "cut.npz")
    with pytest.raises(TypeError, match="HSSMatrix"):
        hsspetsc.matrix.io.save(np.eye(3), tmp_path / "x")


def test_plot_draws_every_block(tmp_path, k02):
    H = hsspetsc.compress(k02, leaf_size=64, tol=1e-6, budget=0.05)
    ax = H.plot()
    n_patches = sum(len(c.get_paths()) for c in ax.collections)
    assert n_patches == 2 * (len(H.far_pairs) + len(H.near_pairs))
    H.plot(tmp_path / "H.png")
    assert (tmp_path / "H.png").stat().st_size > 1000


def test_compress_command_writes_its_files(tmp_path):
    out, png = tmp_path / "K.npz", tmp_path / "K.png"
    rc, log = _run(["-m", "hsspetsc", "compress", "--matrix", "K02", "--n", "1024",
                    "--leaf-size", "64", "--tol", "1e-6", "--out", str(out), "--plot",
                    str(png)])
    assert rc == 0, log
    assert "[hsspetsc] skeletons" in log and "level" in log
    eps2 = float(re.search(r"eps2 = ([0-9.e+-]+)", log).group(1))
    assert eps2 < 1e-5
    assert out.exists() and png.exists()
    assert hsspetsc.load(out).n == 1024
    X = np.random.default_rng(0).random((500, 2))
    np.save(tmp_path / "X.npy", X)
    rc, log = _run(["-m", "hsspetsc", "compress", "--points", str(tmp_path / "X.npy"),
                    "--kernel", "laplace", "--bandwidth", "0.3", "--leaf-size", "32",
                    "--quiet"])
    assert rc == 0 and "eps2 =" in log, log
    rc, log = _run(["-m", "hsspetsc", "compress", "--matrix", "K02", "--n", "1000"])
    assert rc != 0 and "perfect square" in log
    rc, log = _run(["-m", "hsspetsc", "--version"])
    assert rc == 0 and hsspetsc.__version__ in log


def test_help_lists_every_option_and_misspellings_are_reported():
    from hsspetsc.petsc._options import TABLE
    common = ["examples/kernel_pcg.py", "-matrix", "K02", "-N", "1024", "-ksp_type", "cg",
              "-pc_type", "python", "-pc_python_type", "hsspetsc.petsc.HSSPC"]
    rc, out = _run(common + ["-help"])
    assert rc == 0, out
    for key in TABLE:
        assert f"-pc_hss_{key} <" in out, key
    for opt in ("-matrix <", "-N <", "-shift <", "-budget <"):
        assert opt in out, opt
    rc, out = _run(common + ["-pc_hss_tl", "1e-3"])
    assert rc == 0 and "-pc_hss_tl is not an HSSPC option (did you mean -pc_hss_tol?)" in out
    rc, out = _run(common + ["-pc_hss_tl", "1e-3", "-pc_hss_strict"])
    assert rc == 1 and "-pc_hss_tl is not an HSSPC option" in out


@pytest.mark.parametrize("ranks", [0, 2])
def test_exit_is_clean_whatever_the_user_holds(ranks):
    rc, out = _run(["tests/scripts/exit_idiom.py"], mpi=ranks)
    assert rc == 0, out
    assert "SEGV" not in out and "iterations" in out


def _readme_blocks():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# smaller sizes where a block says so (its comment names the full size)
SMALLER = {"20000": "3000", "n=2000": "n=300", "samples=1600": "samples=200"}


def test_every_readme_code_block_runs(tmp_path):
    """The Python blocks run in order in one interpreter (later blocks use earlier
    names), with the sizes of SMALLER."""
    blocks = _readme_blocks()
    assert len(blocks) >= 4
    code = "\n".join(blocks)
    for big, small in SMALLER.items():
        code = code.replace(big, small)
    script = tmp_path / "readme.py"
    script.write_text("import sys, petsc4py\npetsc4py.init(sys.argv)\n" + code)
    env = dict(os.environ, OMP_NUM_THREADS="2")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       env=env, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_api_reference_builds_without_warnings(tmp_path):
    # the docstrings are the API reference (make docs): a broken one fails here
    pytest.importorskip("sphinx")
    rc, out = _run(["-m", "sphinx", "-q", "-E", "-W", "-b", "html", "docs",
                    str(tmp_path / "api")])
    assert rc == 0, out


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from hsspetsc.matrix.io import atomic_write
    path = tmp_path / "f.bin"
    atomic_write(str(path), lambda f: f.write(b"old"))
    assert path.read_bytes() == b"old"

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(path), fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_one_writer_and_one_offset_helper_in_the_package():
    """Files are written through io.atomic_write only; offsets come from
    util.blocks.exclusive_cumsum / pointers, not hand-written cumsums."""
    pkg = os.path.join(ROOT, "hsspetsc")
    replace, cumsum = [], []
    for dirpath, _, files in os.walk(pkg):
        for name in files:
            if not name.endswith((".py", ".pyx")):
                continue
            path = os.path.join(dirpath, name)
            text = open(path).read()
            rel = os.path.relpath(path, ROOT)
            replace += [rel] * text.count("os.replace(")
            cumsum += [rel for pat in (r"np\.r_\[0, np\.cumsum", r"cumsum\([^)]*\)\[:-1\]")
                       for _ in re.findall(pat, text)]
    assert replace == [os.path.join("hsspetsc", "matrix", "io.py")]
    assert cumsum == [], cumsum


# dependencies a module may import inside a function (they may be missing); an
# hsspetsc module that needs one of them at import time may be imported there too
OPTIONAL = {"mpi4py", "petsc4py", "slepc4py", "matplotlib", "sklearn", "torch"}


def _package_imports():
    """{module: ([targets at module level], [(line, target) in function bodies],
    [(line, module imported from, name)])} for every .py module of hsspetsc; a
    target is a module name (``from m import x`` gives m.x when that is a module of
    the package, else m)."""
    import ast
    pkg = os.path.join(ROOT, "hsspetsc")
    paths, is_pkg = {}, {}
    for dirpath, _, files in os.walk(pkg):
        for name in files:
            if name.endswith((".py", ".pyx")):
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                mod = rel.rsplit(".", 1)[0].replace(os.sep, ".")
                init = mod.endswith(".__init__")
                mod = mod[:-len(".__init__")] if init else mod
                is_pkg[mod] = init
                if name.endswith(".py"):
                    paths[mod] = os.path.join(dirpath, name)
    out = {}
    for mod, path in paths.items():
        tree = ast.parse(open(path).read())
        in_body = {id(sub) for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                   for sub in ast.walk(node)}
        top, body, names = [], [], []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg[mod] else mod.split(".")[:-1]
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in is_pkg else base
                           for a in node.names]
                names += [(node.lineno, base, a.name) for a in node.names]
            else:
                continue
            if id(node) in in_body:
                body += [(node.lineno, t) for t in targets]
            else:
                top += targets
        out[mod] = (sorted(set(top)), body, names, is_pkg[mod])
    return out


def test_imports_run_one_way():
    """No import inside a function body but of an optional dependency (or of a
    module of ours that needs one), and no circle among the package's modules: a
    reader sees every dependency at the top of a file, and they run one way."""
    imports = _package_imports()

    def needs_optional(mod, seen):
        if mod in seen or mod not in imports:
            return False
        seen.add(mod)
        return any(t.split(".")[0] in OPTIONAL or needs_optional(t, seen)
                   for t in imports[mod][0])

    hidden = [(mod, line, t) for mod, (_, body, _, _) in imports.items() for line, t in body
              if t.split(".")[0] not in OPTIONAL and not needs_optional(t, set())]
    assert hidden == [], hidden
    # a circle is a module that reaches itself along module-level imports
    graph = {m: [t for t in top if t in imports and t != m]
             for m, (top, _, _, _) in imports.items()}
    assert _circles(graph) == []


def _circles(graph):
    """The circles of a directed graph {node: [targets]}, each as a path."""
    circles, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                circles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return circles


def test_no_private_name_crosses_a_package_boundary():
    """A folder of hsspetsc uses another only through its public names: no
    ``from hsspetsc.x._private import ...`` and no ``import _name`` from a module of
    another folder (names inside one folder are that folder's business)."""
    imports = _package_imports()

    def folder(mod):
        return mod if imports.get(mod, (0, 0, 0, False))[3] else mod.rsplit(".", 1)[0]

    def private(part):
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    crossing = []
    for mod, (_, _, names, _) in imports.items():
        for line, src, name in names:
            if not src.startswith("hsspetsc"):
                continue
            src_mod = f"{src}.{name}" if f"{src}.{name}" in imports else src
            if folder(src_mod if src_mod in imports else src) == folder(mod):
                continue
            if private(name) or any(private(p) for p in src.split(".")[1:]):
                crossing.append((mod, line, src, name))
    assert crossing == [], crossing


def test_folders_depend_one_way():
    """The folders of hsspetsc (and its top-level modules) import each other one way
    (util <- mpi <- matrix <- compression <- petsc <- training, ...): no folder
    reaches itself through another, so each can be read without those above it."""
    imports = _package_imports()

    def folder(mod):
        parts = mod.split(".")
        if len(parts) > 2 or (len(parts) == 2 and imports[mod][3]):
            return ".".join(parts[:2])
        return mod
    graph = {}
    for mod, (top, _, _, _) in imports.items():
        for t in top:
            if t in imports and folder(t) != folder(mod):
                graph.setdefault(folder(mod), set()).add(folder(t))
    assert _circles(graph) == []
    assert "hsspetsc.compression" not in graph["hsspetsc.matrix"]
