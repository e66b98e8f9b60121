"""cffi builder for engine._native (API mode).

The cdef is the text between the CDEF-BEGIN/CDEF-END markers of the C headers
(kv.h and the headers it names), read verbatim: the headers are the one place
the C API is declared.  The package version is compiled into the library and
checked at import (engine/_ffi.py), so a stale build is caught.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CDEF_HEADERS = ["kv_error.h", "kv_hash.h", "kv_io.h", "kv.h", "kv_inspect.h", "kv_index_hooks.h"]
# The core, and beside it engine._hotpath (py_hotpath.c): the one file that
# speaks the Python C API, in the same shared object so it calls the core directly.
SOURCES = [*sorted(str(p.relative_to(ROOT)) for p in HERE.glob("kv_*.c")), "csrc/py_hotpath.c"]
HEADERS = sorted(str(p.relative_to(ROOT)) for p in HERE.glob("kv*.h"))


def _cdef_region(text: str) -> str:
    parts = re.findall(r"/\* CDEF-BEGIN \*/(.*?)/\* CDEF-END \*/", text, re.S)
    return "\n".join(parts)


def _version() -> str:
    text = (ROOT / "engine" / "_version.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', text)
    if not match:
        raise RuntimeError("engine/_version.py has no __version__")
    return match.group(1)


def _cflags() -> list[str]:
    flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-pthread", "-fvisibility=hidden"]
    if os.environ.get("KVENGINE_WERROR") == "1":
        flags.append("-Werror")
    return flags


ffibuilder = FFI()
ffibuilder.cdef("\n".join(_cdef_region((HERE / h).read_text()) for h in CDEF_HEADERS))
ffibuilder.set_source(
    "engine._native",
    '#include "kv.h"\n#include "kv_io.h"\n#include "kv_inspect.h"\n#include "kv_index_hooks.h"\n',
    sources=SOURCES,
    include_dirs=[str(HERE.relative_to(ROOT))],
    define_macros=[("KV_PACKAGE_VERSION", f'"{_version()}"')],
    extra_compile_args=_cflags(),
    extra_link_args=["-pthread"],
    depends=HEADERS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
