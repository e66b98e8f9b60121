"""Uninitialised bytes objects for the C core to fill: a large value is read
straight into the object handed to the caller, with no second copy.

CPython builds a bytes object this way in C (``PyBytes_FromStringAndSize(NULL,
n)``, then writes its contents before the object is shared); this module does
the same from Python.  ``bytes(n)`` would also do, but zeroes the memory first:
a pass over 25 MiB that costs a third of the read itself.  Nothing but the
reader that asked for the object holds it until it is filled, and its hash is
not computed before then.  Where ``ctypes`` or ``ctypes.pythonapi`` is
missing, the zeroed ``bytes(n)`` keeps the same contract.
"""

from __future__ import annotations

from collections.abc import Callable

from engine._ffi import ffi


def _uninitialised() -> Callable[[int], bytes] | None:
    try:
        import ctypes  # absent from some minimal Python builds
    except ImportError:
        return None
    api = getattr(ctypes, "pythonapi", None)
    if api is None:
        return None
    new = api.PyBytes_FromStringAndSize
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)

    def alloc(n: int) -> bytes:
        obj: bytes = new(None, n)
        return obj

    return alloc


_alloc = _uninitialised() or bytes


def new_bytes(n: int) -> tuple[bytes, object]:
    """A fresh bytes object of n > 1 bytes and a ``char *`` to its contents.

    n must be above 1: CPython shares the bytes objects of length 0 and 1.
    """
    if n < 2:
        raise ValueError(f"new_bytes needs at least 2 bytes, got {n}")
    obj = _alloc(n)
    return obj, ffi.from_buffer(obj)
