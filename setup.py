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
    Extension(f"hsspetsc.kernels.{name}", [f"hsspetsc/kernels/{name}.pyx"],
              extra_compile_args=flags, extra_link_args=link)
    for name in ("entries", "kernel_matrix", "matvec", "factor", "gauss_newton",
                 "compression")
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
