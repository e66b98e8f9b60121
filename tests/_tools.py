"""Imports a script of tools/ as a module, so tests run the same harness the tools run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def scratch_dir(prefix: str) -> str:
    """A new temporary directory, on tmpfs when there is one: for tests that open thousands of
    stores, where every open's fsyncs would otherwise make disk latency the cost."""
    import os
    import tempfile

    return tempfile.mkdtemp(
        prefix=prefix, dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    )
