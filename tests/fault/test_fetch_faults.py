"""`vvstore fetch` killed with SIGKILL at named failpoints, and fetches racing each other.

A killed fetch must leave only a resumable partial in tmp/ (visible to `ls --partial`) and no
wrong blob; the next run resumes it, which the HTTP server's own byte count proves.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cas.digest import hash_bytes
from tests.helpers import assert_blobs_sound, blob_files, cli_env, has_blob, payload
from tests.servers.http_server import FaultyHTTPServer, slow

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

KiB, MiB = 1024, 1024 * 1024


def write_model(project: Path, url: str, data: bytes, known: bool = True) -> None:
    m: dict[str, Any] = {"name": "m", "version": "1", "sources": [url]}
    if known:
        m["digest"], m["size"] = str(hash_bytes(data)), len(data)
    (project / "vvstore.yaml").write_text(yaml.safe_dump({"models": [m]}, sort_keys=False))


def part_files(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "tmp").glob("*.part"))


def settle(srv: FaultyHTTPServer) -> None:
    """Wait until the server threads stop counting bytes for a killed client, then reset."""
    last, stable_since = None, time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = dict(srv.bytes_served)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 0.3:
            break
        time.sleep(0.02)
    srv.reset_counters()


class Runner:
    def __init__(self, cmd: list[str], project: Path, store: Path) -> None:
        self.cmd, self.project, self.store = cmd, project, store

    def env(self, failpoints: str | None = None) -> dict[str, str]:
        env = cli_env(self.store)
        if failpoints:
            env["VVSTORE_FAILPOINTS"] = failpoints
        return env

    def argv(self, *args: str) -> list[str]:
        return [*self.cmd, "-C", str(self.project), *args]

    def run(self, *args: str, failpoints: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env(failpoints), capture_output=True, text=True, timeout=120
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def partials(self) -> list[dict[str, Any]]:
        r = self.run("--json", "ls", "--partial")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture
def vv(vvstore_cmd: list[str], vv_project: Path, vv_home: Path) -> Runner:
    return Runner(vvstore_cmd, vv_project, vv_home)


def killed(r: subprocess.CompletedProcess[str]) -> bool:
    return r.returncode == -signal.SIGKILL


# --- SIGKILL ----------------------------------------------------------------------------------


def test_killed_mid_stream_resumes(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    data = payload(20 * MiB, 1)  # several read chunks
    http_server.files["/m.bin"] = data
    write_model(vv.project, http_server.url("/m.bin"), data)
    r = vv.run("fetch", failpoints="download.chunk=kill")
    assert killed(r), (r.returncode, r.stderr)
    assert blob_files(vv_home) == []
    [p] = vv.partials()
    assert p["what"] == "m@1" and p["mode"] == "stream" and p["size"] == len(data)
    assert 0 < p["bytes"] < len(data)
    settle(http_server)
    r = vv.run("--json", "fetch")
    assert r.returncode == 0, r.stderr
    [f] = json.loads(r.stdout)["fetched"]
    assert f["resumed_from"] == p["bytes"]
    time.sleep(0.1)
    # only the remainder crossed the wire
    assert http_server.bytes_served["/m.bin"] == len(data) - p["bytes"]
    assert [rng for m, _, rng, _ in http_server.requests if m == "GET"] == [f"bytes={p['bytes']}-"]
    assert has_blob(vv_home, data)
    assert_blobs_sound(vv_home)
    assert part_files(vv_home) == [] and vv.partials() == []


def test_killed_twice_then_completes(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    data = payload(20 * MiB, 2)
    http_server.files["/m.bin"] = data
    write_model(vv.project, http_server.url("/m.bin"), data)
    seen = []
    for _ in range(2):
        r = vv.run("fetch", failpoints="download.chunk=kill")
        assert killed(r), (r.returncode, r.stderr)
        [p] = vv.partials()
        seen.append(p["bytes"])
        assert_blobs_sound(vv_home)
    assert 0 < seen[0] < seen[1] < len(data)  # each run added to what the last one left
    settle(http_server)
    r = vv.run("fetch")
    assert r.returncode == 0, r.stderr
    time.sleep(0.1)
    assert http_server.bytes_served["/m.bin"] == len(data) - seen[1]
    assert has_blob(vv_home, data)
    assert part_files(vv_home) == []


def test_killed_in_ranged_mode_resumes_the_missing_parts(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    data = payload(64 * MiB, 3)  # large enough for parallel ranges with the CLI's defaults
    http_server.files["/big.bin"] = data
    write_model(vv.project, http_server.url("/big.bin"), data)
    r = vv.run("fetch", failpoints="download.part=kill")
    assert killed(r), (r.returncode, r.stderr)
    assert blob_files(vv_home) == []
    [p] = vv.partials()
    assert p["mode"] == "parts" and len(p["done"]) >= 1
    assert 0 < p["bytes"] < len(data)
    settle(http_server)
    r = vv.run("--json", "fetch")
    assert r.returncode == 0, r.stderr
    time.sleep(0.1)
    assert http_server.bytes_served["/big.bin"] == len(data) - p["bytes"]
    gets = [rng for m, _, rng, _ in http_server.requests if m == "GET"]
    assert gets and all(rng for rng in gets)  # ranged requests for the missing parts only
    assert has_blob(vv_home, data)
    assert_blobs_sound(vv_home)
    assert part_files(vv_home) == [] and vv.partials() == []


def test_killed_before_publishing_completes_without_downloading_again(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    """Killed after verifying, before the rename into blobs/: the next fetch publishes the
    complete partial (and must not ask the server for bytes past the end)."""
    data = payload(2 * MiB, 4)
    http_server.files["/m.bin"] = data
    write_model(vv.project, http_server.url("/m.bin"), data)
    r = vv.run("fetch", failpoints="blob.before_rename=kill")
    assert killed(r), (r.returncode, r.stderr)
    assert blob_files(vv_home) == []
    [p] = vv.partials()
    assert p["bytes"] == len(data)
    settle(http_server)
    r = vv.run("fetch")
    assert r.returncode == 0, r.stderr
    time.sleep(0.1)
    assert http_server.bytes_served["/m.bin"] == 0  # size - partial bytes
    assert has_blob(vv_home, data)
    assert_blobs_sound(vv_home)
    assert part_files(vv_home) == [] and vv.partials() == []


def test_killed_just_after_publishing(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    data = payload(1 * MiB, 5)
    http_server.files["/m.bin"] = data
    write_model(vv.project, http_server.url("/m.bin"), data)
    r = vv.run("fetch", failpoints="blob.after_rename=kill")
    assert killed(r), (r.returncode, r.stderr)
    assert has_blob(vv_home, data)
    settle(http_server)
    r = vv.run("--json", "fetch")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["present"] == ["m@1"]
    assert http_server.requests == []
    assert_blobs_sound(vv_home)
    assert part_files(vv_home) == [] and vv.partials() == []


# --- racing processes -------------------------------------------------------------------------


def _race(vv: Runner, stagger: float) -> list[tuple[int, str]]:
    procs = []
    for i in range(2):
        procs.append(vv.popen("fetch"))
        if i == 0 and stagger:
            time.sleep(stagger)
    out = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        out.append((p.returncode, err))
    return out


def test_two_processes_fetch_the_same_digest(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    data = payload(3 * MiB, 6)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", slow(2 * MiB), slow(2 * MiB))  # ~1.5 s each: they overlap
    write_model(vv.project, http_server.url("/m.bin"), data)
    results = _race(vv, stagger=0.0)
    assert [code for code, _ in results] == [0, 0], results
    assert not any("error" in err.lower() for _, err in results), results
    assert [p.name for p in blob_files(vv_home)] == [hash_bytes(data).hex[2:]]
    assert_blobs_sound(vv_home)
    assert part_files(vv_home) == []
    # one process downloaded; the other waited for it and found the blob
    assert [m for m, _, _, _ in http_server.requests].count("GET") == 1


def test_two_processes_fetch_a_model_without_digest(
    http_server: FaultyHTTPServer, vv: Runner, vv_home: Path
) -> None:
    """No digest, so no per-digest lock: the second process starts while the first one's
    partial is live in tmp/. Both must succeed with one good blob."""
    data = payload(3 * MiB, 7)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", slow(2 * MiB), slow(2 * MiB))
    write_model(vv.project, http_server.url("/m.bin"), data, known=False)
    results = _race(vv, stagger=0.8)
    assert [code for code, _ in results] == [0, 0], results
    assert [p.name for p in blob_files(vv_home)] == [hash_bytes(data).hex[2:]]
    assert_blobs_sound(vv_home)
    assert part_files(vv_home) == []
    [entry] = yaml.safe_load((vv.project / "vvstore.yaml").read_text())["models"]
    assert entry["digest"] == str(hash_bytes(data))


GATED_FETCH = """
import sys, time
from cli.main import cli
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))  # every process past its imports, then all at once
cli(sys.argv[2:], prog_name="vvstore")
"""


def test_processes_fetch_into_a_store_that_does_not_exist_yet(
    http_server: FaultyHTTPServer, vv_project: Path, tmp_path: Path
) -> None:
    """On a fresh machine several fetches create the store at once; none may refuse it as
    "not a vvstore store" while another is still creating it."""
    import sys

    data = payload(1 * MiB, 8)
    http_server.files["/m.bin"] = data
    write_model(vv_project, http_server.url("/m.bin"), data)
    fresh = tmp_path / "fresh-store"
    env = cli_env(fresh)
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GATED_FETCH, str(start), "-C", str(vv_project), "fetch"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert has_blob(fresh, data)
    assert_blobs_sound(fresh)
    assert part_files(fresh) == []
