"""Partial downloads in the store's `tmp/`: started, claimed to resume, listed.

A partial is `tmp/dl.KEY.HOST.PID.RAND.part`, with its resume state beside it in `….part.json`
(what, source, version, size, mode, part_size, done, owner). KEY is the digest when it is
known, so a partial of the same bytes is resumed whichever source serves them. A partial is
taken over by an atomic rename, so two processes never write one file; within a process, a
new name is marked active before anything is renamed to it. A partial whose owner is alive is
never taken. The state is a hint, not data: a torn or lost one costs only a restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write, hostname, unique_suffix

log = logging.getLogger("vvstore")
STALE_FOREIGN = 900.0  # a partial of another host untouched this long is abandoned

_ACTIVE: set[str] = set()  # partials this process is writing right now
_ACTIVE_LOCK = threading.Lock()  # guards _ACTIVE; held only to read or change it


@dataclass
class Partial:
    """One partial file and its resume state."""

    path: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def save(self) -> None:
        # a hint, not data: no fsync per file
        atomic_write(
            self.state_path, json.dumps(self.state, sort_keys=True).encode(), durable=False
        )

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)

    def to_stream(self) -> None:
        """Start a ranged partial over as one stream (the source will not serve ranges)."""
        os.truncate(self.path, 0)
        self.state.update(mode="stream", done=[])
        self.save()

    def empty(self) -> bool:
        try:
            return self.path.stat().st_size == 0
        except OSError:
            return True


def claim(
    tmp: Path, key: str, want: dict[str, Any], by_digest: bool, fresh: bool
) -> tuple[Partial, int]:
    """Adopt a matching partial of `key` left in `tmp` (by atomic rename) and return it with
    the bytes it already holds, or start a new one with the state `want`. `by_digest`: the
    bytes are known by digest, so a changed source version does not make a partial stale.
    `fresh` skips adoption. Pair with `release()` when the download ends."""
    mine = Partial(tmp / f"dl.{key}.{unique_suffix()}.{os.urandom(4).hex()}.part")
    with _ACTIVE_LOCK:
        _ACTIVE.add(str(mine.path))
    try:
        return _adopt_or_start(mine, tmp, key, want, by_digest, fresh)
    except BaseException:
        release(mine)
        raise


def release(partial: Partial) -> None:
    """This process no longer writes the partial (it may be resumed by whoever comes next)."""
    with _ACTIVE_LOCK:
        _ACTIVE.discard(str(partial.path))


def _adopt_or_start(
    mine: Partial, tmp: Path, key: str, want: dict[str, Any], by_digest: bool, fresh: bool
) -> tuple[Partial, int]:
    what = want.get("what")
    for old in [] if fresh else sorted(tmp.glob(f"dl.{key}.*.part")):
        try:
            state = json.loads(old.with_name(old.name + ".json").read_text())
            if in_use(state.get("owner"), old):
                continue  # another live download's own file: never shared
            os.rename(old, mine.path)  # atomic claim: only one process wins it
        except (OSError, ValueError):
            continue
        os.chmod(mine.path, 0o644)  # a crash after publish_temp's chmod left it read-only
        os.replace(old.with_name(old.name + ".json"), mine.state_path)
        same = state.get("size") == want["size"] and (
            by_digest or state.get("version") == want["version"]
        )
        if same and state.get("mode") == want["mode"] and state.get("part_size") == want[
            "part_size"
        ]:
            mine.state = {**state, "owner": want["owner"]}
            mine.save()
            offset = (
                mine.path.stat().st_size
                if state["mode"] == "stream"
                else len(state["done"]) * want["part_size"]
            )
            log.info("resuming %s from a partial download (%d bytes)", what, offset)
            return mine, offset
        log.info("discarding a stale partial of %s (the source changed)", what)
        mine.discard()
    mine.state = want
    mine.path.touch()
    mine.save()
    return mine, 0


def listing(tmp: Path) -> list[dict[str, Any]]:
    """Every partial in `tmp` with its resume state, its bytes so far and its path."""
    out = []
    for state_path in sorted(tmp.glob("dl.*.part.json")):
        try:
            state = json.loads(state_path.read_text())
            part = state_path.with_name(state_path.name[: -len(".json")])
            state["bytes"] = (
                part.stat().st_size
                if state.get("mode") == "stream"
                else sum(
                    min(state["part_size"], state["size"] - i * state["part_size"])
                    for i in state.get("done", [])
                )
            )
            state["path"] = str(part)
            out.append(state)
        except (OSError, ValueError, KeyError) as e:
            log.info("ignoring unreadable partial state %s: %s", state_path, e)
    return out


def owner() -> dict[str, Any]:
    """Who is writing: this host and process."""
    return {"host": hostname(), "pid": os.getpid()}


def in_use(owner: Any, path: Path) -> bool:
    """True while a partial may still be written: by a thread of this process (which marks
    the name before renaming anything to it), or by the live process named as its owner."""
    with _ACTIVE_LOCK:
        if str(path) in _ACTIVE:
            return True
    if not isinstance(owner, dict):
        return False
    if owner.get("host") != hostname():
        try:
            return time.time() - path.stat().st_mtime < STALE_FOREIGN
        except OSError:
            return False
    pid = owner.get("pid")
    if pid == os.getpid():
        return False  # left by a failed attempt of this process
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False  # gone (or no such pid): its partial is free to resume
    return True
