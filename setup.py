# cffi_modules has no pyproject.toml equivalent; everything else lives there.
# Importing cffi here makes a build environment without it fail loudly instead
# of silently skipping the extension.
import cffi  # noqa: F401
from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
