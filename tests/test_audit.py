"""The audit log: JSON lines, appended whole by any number of concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from cas.audit import AuditLog

WRITERS = 4
LINES = 200


def _write_many(path: str, worker: int) -> None:
    log = AuditLog(path)
    for i in range(LINES):
        # a long-ish field so torn writes would show
        log.record(
            "publish", digest=f"blake3:{worker:02d}{i:062d}", ref=f"m{worker}@{i}", note="x" * 300
        )


def test_record_fields(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.record("add", digest="blake3:" + "0" * 64, ref="m@1", size=3, source=None)
    log.record("quarantine", outcome="failed", reason="bad")
    entries = list(log.entries())
    assert [e["action"] for e in entries] == ["add", "quarantine"]
    first = entries[0]
    assert {"time", "user", "host", "action", "outcome"} <= first.keys()
    assert first["outcome"] == "ok" and first["ref"] == "m@1" and first["size"] == "3"
    assert "source" not in first  # None fields are left out
    assert entries[1]["outcome"] == "failed" and entries[1]["reason"] == "bad"


def test_entries_of_missing_log_is_empty(tmp_path: Path) -> None:
    assert list(AuditLog(tmp_path / "none.log").entries()) == []


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.record("a")
    with open(path, "a") as f:
        f.write('{"action": "torn"\n[1, 2]\nnot json\n')
    log.record("b")
    assert [e["action"] for e in log.entries()] == ["a", "b"]


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = path.read_bytes().split(b"\n")
    assert raw[-1] == b""
    lines = raw[:-1]
    assert len(lines) == WRITERS * LINES
    refs = set()
    for line in lines:
        entry = json.loads(line)  # every line well-formed on its own
        assert entry["action"] == "publish"
        refs.add(entry["ref"])
    assert len(refs) == WRITERS * LINES
