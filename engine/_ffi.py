"""The one door to the compiled core: imports engine._native, checks that it was
built from this version of the sources, loads engine._hotpath from the same
shared object, and turns C return codes into exceptions.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ExtensionFileLoader
from importlib.util import module_from_spec, spec_from_file_location
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from engine._version import __version__
from engine.errors import CODED_ERRORS, CorruptionError, EngineError, EngineIOError

try:
    from engine import _native
    from engine._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        f"engine._native is missing from {os.path.dirname(os.path.abspath(__file__))}. In a "
        "source checkout, build it there with `pip install -e .`: Python imports the engine/ "
        "folder of the current directory before an installed copy"
    ) from exc

_built = ffi.string(lib.kv_version()).decode()
if _built != __version__:  # pragma: no cover - only with a stale build
    raise ImportError(
        f"stale engine._native (built for {_built}, package is {__version__}); "
        "rebuild with `pip install -e .`"
    )


def _load_hotpath() -> ModuleType:
    """engine._hotpath (csrc/py_hotpath.c): a second module in engine._native's
    shared object, which PEP 489 lets a loader find by its own name."""
    name = "engine._hotpath"
    loader = ExtensionFileLoader(name, _native.__file__)
    spec = spec_from_file_location(name, _native.__file__, loader=loader)
    if spec is None:  # pragma: no cover - only on a broken install
        raise ImportError(f"{name}: no module spec for {_native.__file__}")
    module = module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


if TYPE_CHECKING:  # the checker reads engine/_hotpath.pyi; there is no engine/_hotpath file
    from engine import _hotpath as hotpath
else:
    hotpath = sys.modules.get("engine._hotpath") or _load_hotpath()

_ERROR_MAP: dict[int, type[EngineError]] = {getattr(lib, cls.C_NAME): cls for cls in CODED_ERRORS}


def strerror(rc: int) -> str:
    return str(ffi.string(lib.kv_strerror(rc)).decode())


def raise_error(rc: int, what: str, path: str | None = None, offset: int | None = None) -> NoReturn:
    """Raises the exception for C return code rc (non-zero)."""
    text = strerror(rc)
    if rc > 0:
        raise EngineIOError(rc, f"{what}: {os.strerror(rc)}", path)
    cls = _ERROR_MAP.get(rc, EngineError)
    if cls is CorruptionError:
        where = f"{path} at offset {offset}" if path is not None else "store"
        raise CorruptionError(f"{what}: {text} ({where})", path, offset)
    raise cls(f"{what}: {text}")


def check(rc: int, what: str, path: str | None = None) -> None:
    if rc:
        raise_error(rc, what, path)


__all__ = ["check", "ffi", "hotpath", "lib", "raise_error", "strerror"]
