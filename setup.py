"""Build the Cython/OpenMP kernels of hsspetsc.

The kernels use typed memoryviews only, so they need no numpy headers; BLAS comes
from ``scipy.linalg.cython_blas`` at run time. OpenMP is on by default; set
``HSSPETSC_NO_OPENMP=1`` to build without it (prange then runs serially).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = os.environ.get("HSSPETSC_NO_OPENMP", "0") != "1"
flags = ["-O3", "-fopenmp"] if openmp else ["-O3"]
link = ["-fopenmp"] if openmp else []

extensions = [
    Extension(f"hsspetsc.{name}", [f"hsspetsc/{name}.pyx"],
              extra_compile_args=flags, extra_link_args=link)
    for name in ("_entries", "_kernels", "_matvec", "_factor", "_gn", "_build")
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["."],
        compiler_directives={"boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
    ),
)
