from typing import Any, TypeVar

_T = TypeVar("_T")

def instances(
    cls: type[_T], descriptors: tuple[Any, ...], columns: tuple[list[Any] | None, ...], /
) -> list[_T]: ...
