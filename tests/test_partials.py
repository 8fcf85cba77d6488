"""cas.partials: partial downloads in tmp/, claimed by rename, resumed, listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cas import partials


def want(**over: Any) -> dict[str, Any]:
    state = {"what": "m@1", "source": "http://a/m", "version": "v1", "size": 100,
             "mode": "stream", "part_size": 64, "done": [], "owner": partials.owner()}
    return state | over


def test_a_new_partial_is_empty_with_its_state_beside_it(tmp_path: Path) -> None:
    p, offset = partials.claim(tmp_path, "k1", want(), by_digest=True, fresh=False)
    try:
        assert offset == 0 and p.path.read_bytes() == b"" and p.empty()
        assert p.path.name.startswith("dl.k1.") and p.path.name.endswith(".part")
        assert json.loads(p.state_path.read_text())["what"] == "m@1"
        assert partials.in_use(partials.owner(), p.path)  # this process is writing it
    finally:
        partials.release(p)
    assert not partials.in_use(partials.owner(), p.path)  # released: free to resume


def test_a_released_partial_is_adopted_with_its_bytes(tmp_path: Path) -> None:
    first, _ = partials.claim(tmp_path, "k2", want(), by_digest=True, fresh=False)
    first.path.write_bytes(b"x" * 40)
    partials.release(first)
    [listed] = partials.listing(tmp_path)
    assert (listed["bytes"], listed["path"]) == (40, str(first.path))
    second, offset = partials.claim(tmp_path, "k2", want(), by_digest=True, fresh=False)
    partials.release(second)
    assert offset == 40 and second.path != first.path and not first.path.exists()
    assert second.path.read_bytes() == b"x" * 40


def test_a_changed_version_makes_a_partial_stale_unless_known_by_digest(tmp_path: Path) -> None:
    old, _ = partials.claim(tmp_path, "k3", want(), by_digest=False, fresh=False)
    old.path.write_bytes(b"y" * 10)
    partials.release(old)
    new, offset = partials.claim(tmp_path, "k3", want(version="v2"), by_digest=False, fresh=False)
    partials.release(new)
    assert offset == 0 and new.path.read_bytes() == b""
    assert [p.name for p in tmp_path.glob("dl.k3.*.part")] == [new.path.name]


def test_a_live_process_partial_is_never_taken(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs, _ = partials.claim(
            tmp_path, "k4", want(owner={"host": partials.owner()["host"], "pid": other.pid}),
            by_digest=True, fresh=False,
        )
        theirs.path.write_bytes(b"z" * 5)
        partials.release(theirs)  # this process lets go; the named owner is still alive
        mine, offset = partials.claim(tmp_path, "k4", want(), by_digest=True, fresh=False)
        partials.release(mine)
        assert offset == 0 and theirs.path.read_bytes() == b"z" * 5
        mine.discard()
    finally:
        other.kill()
        other.wait()
    again, offset = partials.claim(tmp_path, "k4", want(), by_digest=True, fresh=False)
    partials.release(again)
    assert offset == 5 and not theirs.path.exists()  # its owner is gone: resumed
    assert again.path.read_bytes() == b"z" * 5
