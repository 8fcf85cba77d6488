"""A small TOML writer for the lockfile. Pure.

tomli_w always writes a nested table as a `[a.b.c]` sub-table; vvstore.lock keeps
`hashes = { blake3 = "…" }` inline and every `sources` array one entry a line, as pylock.toml
does. Checked against `tomllib` by the lockfile's property tests.
"""

from __future__ import annotations

import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {c: "\\" + e for c, e in zip('"\\\b\t\n\f\r', '"\\btnfr', strict=True)}


def emit_toml(table: dict[str, Any], name: str, out: list[str]) -> None:
    """Scalars and inline values first, then arrays of tables as `[[name.key]]` blocks."""
    if name:
        out.append(f"\n[[{name}]]")
    nested = []
    for key, value in table.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested.append((key, value))
        else:
            out.append(f"{_key(key)} = {_value(value)}")
    for key, rows in nested:
        for row in rows:
            emit_toml(row, f"{name}.{key}" if name else key, out)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, dict):
        items = ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items())
        return f"{{ {items} }}" if v else "{}"
    if isinstance(v, list):
        return "[\n" + "".join(f"    {_value(x)},\n" for x in v) + "]" if v else "[]"
    raise TypeError(f"cannot write {type(v).__name__} to the lockfile")


def _string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = (
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in s
    )
    return '"' + "".join(out) + '"'
