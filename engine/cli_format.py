"""Presentation helpers of the kvengine CLI: safe escaping, byte sizes, tables, JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(data: bytes | str) -> str:
    """data as one printable line: non-printable characters and invalid UTF-8
    bytes as backslash escapes, so a key cannot move the cursor, colour the
    terminal or forge a line of output."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; numeric columns are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


class StreamTable:
    """A table printed row by row, for output too long to hold: fixed column
    widths (a wider cell only pushes the rest of its line), the last column free."""

    def __init__(self, columns: Sequence[tuple[str, int]]) -> None:
        self.columns = columns

    def header(self) -> str:
        names = [name for name, _ in self.columns]
        rules = ["-" * max(width, len(name)) for name, width in self.columns]
        return self._line(names, numeric=False) + "\n" + self._line(rules, numeric=False)

    def row(self, values: Sequence[Any]) -> str:
        return self._line(values, numeric=True)

    def _line(self, values: Sequence[Any], *, numeric: bool) -> str:
        parts = []
        for (name, width), value in zip(self.columns, values, strict=True):
            width = max(width, len(name))
            text = str(value)
            right = numeric and isinstance(value, int | float)
            parts.append(text.rjust(width) if right else text.ljust(width))
        return "  ".join(parts).rstrip()


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """JSON text of value; dataclasses become objects.  ASCII-only, so no
    control or bidirectional character reaches the terminal unescaped."""
    return json.dumps(_plain(value), indent=indent)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


__all__ = ["StreamTable", "escape", "human_bytes", "percent", "table", "to_json"]
