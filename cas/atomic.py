"""Writes that cannot be seen half-done: temp file in the same directory, fsync, replace."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .failpoints import failpoint


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or create inside `path` durable (POSIX needs the directory fsynced)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unique_suffix() -> str:
    """Process-unique part of a temp name: host and pid, so writers never share a temp file."""
    return f"{socket.gethostname()}.{os.getpid()}"


@contextmanager
def temp_file(
    directory: str | os.PathLike[str], prefix: str = ""
) -> Iterator[tuple[Path, BinaryIO]]:
    """A fresh, process-unique temp file in `directory`, removed if the block raises."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=f"{prefix}{unique_suffix()}.", suffix=".tmp")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield path, f
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int = 0o644,
    tmp_dir: str | os.PathLike[str] | None = None,
    durable: bool = True,
) -> None:
    """Replace `path` with `data` atomically: readers see the old file or the new, never half.

    The temp file goes in `tmp_dir` (same filesystem as `path`), else beside `path`. With
    `durable` off the fsyncs are skipped: for hints (resume state) that may be lost in a power
    cut but must never be seen torn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_file(tmp_dir or path.parent, prefix=f".{path.name}.") as (tmp, f):
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.chmod(tmp, mode)
    failpoint("atomic.before_rename")
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)
