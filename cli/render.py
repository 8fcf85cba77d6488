"""Rendering for people (tables, sizes) and for scripts (one JSON document on stdout)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click


def human_size(n: int | None) -> str:
    """Bytes for people, in powers of 1024: `1.5 MiB`."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def emit_json(doc: Any) -> None:
    """The one JSON document a `--json` command prints."""
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    """A plain aligned table on stdout."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def note(message: str) -> None:
    """A line for people on stderr."""
    click.echo(message, err=True)


def stdout_binary() -> Any:
    return sys.stdout.buffer
