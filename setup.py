# cffi_modules has no pyproject.toml equivalent; everything else lives there.
# Importing cffi here makes a build environment without it fail loudly instead
# of silently skipping the extension.
import cffi  # noqa: F401
from setuptools import Extension, setup

setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
    ext_modules=[
        Extension(
            "engine._instances",
            ["csrc/py_instances.c"],
            py_limited_api=True,
            extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra"],
        ),
    ],
)
