"""Build of the optional C extension; everything else about the package is in setup.cfg.

``otcls.ot._fused_sinkhorn`` (src/otcls/ot/native/) solves batches of small balanced problems with one fused,
cache-resident loop per problem. It is optional: where it does not compile, otcls runs the same solver in
PyTorch operations (``otcls.ot.fused.available()`` tells which).
"""
import platform
import sys

from setuptools import Extension, setup

VECTOR_MATH = sys.platform.startswith("linux") and platform.machine() == "x86_64"  # glibc's libmvec

setup(ext_modules=[Extension(
    "otcls.ot._fused_sinkhorn",
    sources=["src/otcls/ot/native/fused_sinkhorn.c"],
    depends=["src/otcls/ot/native/sinkhorn_kernel.h"],
    extra_compile_args=["-O3", "-std=c11", "-fopenmp-simd"],
    libraries=["mvec", "m"] if VECTOR_MATH else ["m"],
    optional=True,
)])
