"""The compiled core: it imports, it is built from these sources, its API is complete."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import engine
from engine import _native
from engine._ffi import ffi, lib

ROOT = Path(__file__).resolve().parent.parent


def _cdef_text() -> str:
    text = ""
    for header in ["kv_error.h", "kv_hash.h", "kv_io.h", "kv.h"]:
        source = (ROOT / "csrc" / header).read_text()
        text += "\n".join(re.findall(r"/\* CDEF-BEGIN \*/(.*?)/\* CDEF-END \*/", source, re.S))
    return text


def test_native_module_imports() -> None:
    assert _native.lib is lib and _native.ffi is ffi
    assert ffi.string(lib.kv_version()).decode() == engine.__version__


def test_version_is_one_string_everywhere() -> None:
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "engine" / "_version.py").read_text())
    assert version is not None and version.group(1) == engine.__version__
    assert (
        'version = { attr = "engine._version.__version__" }'
        in (ROOT / "pyproject.toml").read_text()
    )


def test_every_declared_function_is_there() -> None:
    names = re.findall(r"^[\w ]+?\**\b(kv_\w+)\(", _cdef_text(), re.M)
    assert "kv_open" in names and "kv_put" in names and "kv_xxh64" in names
    missing = [n for n in names if not callable(getattr(lib, n, None))]
    assert missing == []


def test_struct_sizes_are_multiples_of_8() -> None:
    # Arrays of these structs cross the boundary; no hidden tail padding differences.
    for name in ["kv_value", "kv_list_item", "kv_stats", "kv_seg_info", "kv_damage", "kv_op"]:
        assert ffi.sizeof(name) % 8 == 0, name


def test_stale_build_is_refused() -> None:
    # The import check compares the version compiled into the library with the
    # package's; a library built from other sources must not load silently.
    script = textwrap.dedent(
        f"""
        import sys, types
        pkg = types.ModuleType("engine")
        pkg.__path__ = [{str(ROOT / "engine")!r}]
        sys.modules["engine"] = pkg
        fake = types.ModuleType("engine._version")
        fake.__version__ = "0.0.0-not-this-build"
        sys.modules["engine._version"] = fake
        try:
            import engine._ffi
        except ImportError as exc:
            print("refused:", exc)
        else:
            print("loaded")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.startswith("refused:") and "stale" in out.stdout
