"""cas.atomic: atomic replacement, and write-behind flushing from a helper thread."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

import cas.atomic as atomic
from cas.atomic import WriteBehind, atomic_write


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every write-back started: (fd, name of the thread that started it); it still runs."""
    calls: list[tuple[int, str]] = []
    real = atomic._start_writeback

    def counting(fd: int) -> None:
        calls.append((fd, threading.current_thread().name))
        real(fd)

    monkeypatch.setattr(atomic, "_start_writeback", counting)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_writeback_uses_sync_file_range_on_linux(tmp_path: Path) -> None:
    assert atomic._load_sync_file_range()
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x" * 100_000)
        f.flush()
        atomic._start_writeback(f.fileno())  # no error on a regular file
    with pytest.raises(OSError):
        atomic._start_writeback(1 << 20)  # no such descriptor


def test_write_behind_flushes_off_the_writing_thread(
    tmp_path: Path, syncs: list[tuple[int, str]]
) -> None:
    with open(tmp_path / "f", "wb") as f:
        fd = f.fileno()
        with WriteBehind(fd, every=1000) as behind:
            for _ in range(10):
                f.write(b"x" * 500)
                f.flush()
                behind.wrote(500)
                if len(syncs) == 0 and behind._since == 0:  # a flush is due: let it happen
                    deadline = time.monotonic() + 10
                    while not syncs and time.monotonic() < deadline:
                        time.sleep(0.001)
        # exiting joined the helper: no flush can still be running on a file about to close
        assert behind._thread is not None and not behind._thread.is_alive()
    assert syncs, "5,000 bytes at every=1000 started no write-back"
    assert all(call == (fd, "vvstore-writeback") for call in syncs)
    assert len(syncs) <= 5  # at most one per 1,000 bytes (wake-ups may coalesce)
    assert behind.error is None


def test_write_behind_below_the_threshold_starts_nothing(
    tmp_path: Path, syncs: list[tuple[int, str]]
) -> None:
    with open(tmp_path / "f", "wb") as f, WriteBehind(f.fileno(), every=1 << 20) as behind:
        f.write(b"x" * 1000)
        behind.wrote(1000)
    assert syncs == [] and behind._thread is None


def test_write_behind_default_is_read_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "WRITE_BEHIND_EVERY", 123)
    assert WriteBehind(0).every == 123


def test_write_behind_keeps_the_first_error_and_stops() -> None:
    """A failing flush (a full or failing disk) is kept, not raised in the helper thread;
    the writer's own final fsync is what reports it."""
    with WriteBehind(1 << 20, every=1) as behind:  # no such descriptor: EBADF
        behind.wrote(1)
        assert behind._thread is not None
        behind._thread.join(timeout=10)  # it stops after the first failure
        assert not behind._thread.is_alive()
    assert isinstance(behind.error, OSError)
