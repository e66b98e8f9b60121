# engine._hotpath (csrc/py_hotpath.c), loaded by engine._ffi from engine._native's file.
import builtins
from collections.abc import Callable
from typing import Any, Final

SLOW: Final[object]
FAILED: Final[object]

class Handle:
    def __init__(
        self,
        owner: Any,
        address: int,
        prefix: bytes,
        clock: Callable[[], float] | None,
        max_key: int,
        max_value: int,
    ) -> None: ...

def put(handle: Handle, key: object, value: object, /) -> int | object | None: ...
def delete(handle: Handle, key: object, /) -> int | object | None: ...
def get(handle: Handle, key: object, type: object, /) -> bytes | str | object | None: ...
def list(
    handle: Handle, prefix: bytes, after: bytes, limit: int, cls: type, /
) -> tuple[builtins.list[Any], bool, bool] | int | object: ...
