"""The audit log: one JSON line per action, appended atomically by any number of writers."""

from __future__ import annotations

import functools
import getpass
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .atomic import hostname


@functools.cache
def _user() -> str:
    """Who is acting, asked once per process (getuser reads the environment, then passwd)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return str(os.getuid())


class AuditLog:
    """`audit.log` in a store: JSON lines of time, user, host, action, digest, ref, outcome."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def record(self, action: str, *, outcome: str = "ok", **fields: Any) -> None:
        """Append one line. Fields that are None are left out; `source` must be redacted."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "user": _user(),
            "host": hostname(),
            "action": action,
            **{k: str(v) for k, v in fields.items() if v is not None},
            "outcome": outcome,
        }
        line = (json.dumps(entry, sort_keys=False) + "\n").encode()
        # O_APPEND and a single write(): concurrent writers never interleave within a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every well-formed line, oldest first; a torn or foreign line is skipped."""
        try:
            f = open(self.path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        with f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield entry
