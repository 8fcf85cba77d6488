"""`vvstore fetch`, `vvstore add URL` and `vvstore ls --partial` against the local HTTP server.

Most tests run the real console script in a subprocess; the few that need a faster retry
schedule than the default (a dead port is retried with backoff) run in-process.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cas.digest import hash_bytes
from cas.retry import RetryPolicy
from cli.main import cli
from tests.helpers import assert_blobs_sound, blob_files, cli_env, has_blob, payload
from tests.servers.http_server import FaultyHTTPServer, drop_after, status, wrong_bytes

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

KiB, MiB = 1024, 1024 * 1024


def dead_url(path: str = "/m.bin") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def write_models(project: Path, models: list[dict[str, Any]]) -> None:
    (project / "vvstore.yaml").write_text(yaml.safe_dump({"models": models}, sort_keys=False))


def model(
    name: str, *sources: str, data: bytes | None = None, version: str = "1"
) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "version": version, "sources": list(sources)}
    if data is not None:
        m["digest"], m["size"] = str(hash_bytes(data)), len(data)
    return m


class Run:
    """One finished `vvstore` subprocess."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@pytest.fixture
def vv(vvstore_cmd: list[str], vv_project: Path, vv_home: Path):
    """Run `vvstore -C <project> ARGS...` in a subprocess with the test's store."""

    def run(*args: str, env: dict[str, str] | None = None) -> Run:
        full_env = cli_env(vv_home, **(env or {}))
        proc = subprocess.run(
            [*vvstore_cmd, "-C", str(vv_project), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(proc)

    return run


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs: a quick retry schedule, so a dead port costs milliseconds."""
    monkeypatch.setattr(
        "cas.download.RetryPolicy", lambda: RetryPolicy(attempts=3, base=0.01, cap=0.02)
    )


def invoke(project: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["-C", str(project), *args], catch_exceptions=False)


# --- many files -------------------------------------------------------------------------------


def test_fetch_fifty_files_with_jobs_8(
    http_server: FaultyHTTPServer, vv, vv_project: Path, vv_home: Path
) -> None:
    datas = [payload(10 * KiB + i, i) for i in range(50)]
    for i, d in enumerate(datas):
        http_server.files[f"/f/{i}.bin"] = d
    # half with a digest to verify against, half with none yet (fetch records what it computed)
    write_models(
        vv_project,
        [
            model(f"m{i}", http_server.url(f"/f/{i}.bin"), data=d if i % 2 else None)
            for i, d in enumerate(datas)
        ],
    )
    r = vv("--json", "fetch", "--jobs", "8")
    assert r.code == 0, r
    doc = r.json()
    assert len(doc["fetched"]) == 50 and doc["present"] == [] and doc["errors"] == []
    for d in datas:
        assert has_blob(vv_home, d)
    assert len(blob_files(vv_home)) == 50
    assert_blobs_sound(vv_home)
    recorded = {
        m["name"]: m for m in yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"]
    }
    for i, d in enumerate(datas):
        assert recorded[f"m{i}"]["digest"] == str(hash_bytes(d))
        assert recorded[f"m{i}"]["size"] == len(d)
    assert not list((vv_home / "tmp").glob("*.part"))


def test_fetch_when_all_present_touches_nothing(
    http_server: FaultyHTTPServer, vv, vv_project: Path
) -> None:
    datas = [payload(5 * KiB, 60 + i) for i in range(3)]
    for i, d in enumerate(datas):
        http_server.files[f"/p/{i}"] = d
    write_models(
        vv_project,
        [model(f"p{i}", http_server.url(f"/p/{i}"), data=d) for i, d in enumerate(datas)],
    )
    assert vv("fetch").code == 0
    http_server.reset_counters()
    r = vv("--json", "fetch")
    assert r.code == 0, r
    assert r.json() == {"fetched": [], "present": ["p0@1", "p1@1", "p2@1"], "errors": []}
    assert http_server.requests == []  # no HEAD, no GET: nothing on the network


def test_fetch_json_shape(http_server: FaultyHTTPServer, vv, vv_project: Path) -> None:
    good, bad = payload(4 * KiB, 70), payload(4 * KiB, 71)
    http_server.files["/good"] = good
    write_models(
        vv_project,
        [
            model("good", http_server.url("/good"), data=good),
            model("bad", http_server.url("/missing"), data=bad),
        ],
    )
    r = vv("--json", "fetch")
    assert r.code == 6, r
    doc = r.json()
    assert set(doc) == {"fetched", "present", "errors"}
    [f] = doc["fetched"]
    assert set(f) == {"ref", "digest", "size", "source", "resumed_from"}
    assert (f["ref"], f["digest"], f["size"], f["source"], f["resumed_from"]) == (
        "good@1",
        str(hash_bytes(good)),
        len(good),
        http_server.url("/good"),
        0,
    )
    [e] = doc["errors"]
    assert set(e) == {"ref", "error", "exit_code"}
    assert e["ref"] == "bad@1" and e["exit_code"] == 6
    assert http_server.url("/missing") in e["error"] and "404" in e["error"]


def test_fetch_named_ref_only(
    http_server: FaultyHTTPServer, vv, vv_project: Path, vv_home: Path
) -> None:
    a, b = payload(2 * KiB, 72), payload(2 * KiB, 73)
    http_server.files["/a"], http_server.files["/b"] = a, b
    write_models(
        vv_project,
        [model("a", http_server.url("/a"), data=a), model("b", http_server.url("/b"), data=b)],
    )
    r = vv("--json", "fetch", "b")
    assert r.code == 0, r
    assert [f["ref"] for f in r.json()["fetched"]] == ["b@1"]
    assert has_blob(vv_home, b) and not has_blob(vv_home, a)
    assert all(p != "/a" for _, p, _, _ in http_server.requests)


# --- exit codes -------------------------------------------------------------------------------


def test_wrong_bytes_exit_5_quarantined(
    http_server: FaultyHTTPServer, vv, vv_project: Path, vv_home: Path
) -> None:
    data = payload(100 * KiB, 80)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", wrong_bytes())
    write_models(vv_project, [model("m", http_server.url("/m.bin"), data=data)])
    r = vv("fetch")
    assert r.code == 5, r
    assert blob_files(vv_home) == []
    q = sorted((vv_home / "quarantine").iterdir())
    bad = [p for p in q if not p.name.endswith(".reason")]
    assert len(bad) == 1 and bad[0].stat().st_size == len(data)
    assert (bad[0].parent / (bad[0].name + ".reason")).read_text().strip()
    assert not list((vv_home / "tmp").glob("*.part"))


def test_missing_everywhere_exit_6_lists_each_source(
    http_server: FaultyHTTPServer, vv, vv_project: Path
) -> None:
    data = payload(1000, 81)
    http_server.files["/forbidden"] = data
    http_server.inject("/forbidden", status(403))
    urls = [http_server.url("/missing"), http_server.url("/forbidden")]
    write_models(vv_project, [model("m", *urls, data=data)])
    r = vv("fetch")
    assert r.code == 6, r
    assert urls[0] in r.stderr and "404" in r.stderr
    assert urls[1] in r.stderr and "403" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_model_exit_4(vv, vv_project: Path) -> None:
    write_models(vv_project, [])
    r = vv("fetch", "nope")
    assert r.code == 4, r


def test_model_without_sources_exit_4(vv, vv_project: Path) -> None:
    write_models(vv_project, [model("m", data=payload(100, 82))])
    r = vv("fetch")
    assert r.code == 4, r
    assert "m@1" in r.stderr


def test_bad_jobs_is_a_usage_error(vv, vv_project: Path) -> None:
    write_models(vv_project, [])
    assert vv("fetch", "--jobs", "0").code == 2


def test_empty_project_fetch_is_ok(vv, vv_project: Path) -> None:
    write_models(vv_project, [])
    r = vv("--json", "fetch")
    assert r.code == 0, r
    assert r.json() == {"fetched": [], "present": [], "errors": []}


# --- fallback (in-process, with a quick retry schedule) ---------------------------------------


def test_fallback_404_dead_good(
    http_server: FaultyHTTPServer, vv_project: Path, vv_home: Path, fast_retries: None
) -> None:
    data = payload(50 * KiB, 83)
    http_server.files["/good"] = data
    urls = [http_server.url("/missing"), dead_url(), http_server.url("/good")]
    write_models(vv_project, [model("m", *urls, data=data)])
    res = invoke(vv_project, "--json", "fetch")
    assert res.exit_code == 0, res.output
    [f] = json.loads(res.stdout)["fetched"]
    assert f["source"] == urls[2]
    assert has_blob(vv_home, data)


def test_fallback_all_bad_exit_6(
    http_server: FaultyHTTPServer, vv_project: Path, vv_home: Path, fast_retries: None
) -> None:
    urls = [http_server.url("/missing"), dead_url()]
    write_models(vv_project, [model("m", *urls, data=payload(100, 84))])
    res = invoke(vv_project, "fetch")
    assert res.exit_code == 6
    assert urls[0] in res.stderr and "404" in res.stderr
    assert urls[1] in res.stderr and "connect" in res.stderr


def test_fallback_all_wrong_exit_5(vv_project: Path, vv_home: Path, fast_retries: None) -> None:
    data = payload(10 * KiB, 85)
    with FaultyHTTPServer({"/a": data}) as one, FaultyHTTPServer({"/b": data}) as two:
        one.inject("/a", wrong_bytes())
        two.inject("/b", wrong_bytes())
        write_models(vv_project, [model("m", one.url("/a"), two.url("/b"), data=data)])
        res = invoke(vv_project, "fetch")
    assert res.exit_code == 5
    assert one.url("/a") in res.stderr and two.url("/b") in res.stderr
    assert blob_files(vv_home) == []


# --- partials ---------------------------------------------------------------------------------


def test_ls_partial_then_resume(
    http_server: FaultyHTTPServer, vv, vv_project: Path, vv_home: Path
) -> None:
    data = payload(2 * MiB, 86)
    http_server.files["/m.bin"] = data
    # the connection drops after 700000 bytes; the resume attempt is refused: a partial stays
    http_server.inject("/m.bin", drop_after(700_000), status(403))
    write_models(vv_project, [model("m", http_server.url("/m.bin"), data=data)])
    r = vv("fetch")
    assert r.code == 6, r
    ls = vv("--json", "ls", "--partial")
    assert ls.code == 0, ls
    [p] = ls.json()
    assert (p["what"], p["bytes"], p["size"], p["mode"], p["source"]) == (
        "m@1",
        700_000,
        len(data),
        "stream",
        http_server.url("/m.bin"),
    )
    text = vv("ls", "--partial")
    assert text.code == 0 and "m@1" in text.stdout
    time.sleep(0.1)
    http_server.reset_counters()
    r = vv("--json", "fetch")
    assert r.code == 0, r
    assert r.json()["fetched"][0]["resumed_from"] == 700_000
    time.sleep(0.1)
    assert http_server.bytes_served["/m.bin"] == len(data) - 700_000
    assert has_blob(vv_home, data)
    assert vv("--json", "ls", "--partial").json() == []


# --- add URL ----------------------------------------------------------------------------------


def test_add_url_records_source_digest_and_size(
    http_server: FaultyHTTPServer, vv, vv_project: Path, vv_home: Path
) -> None:
    data = payload(30 * KiB, 87)
    http_server.files["/models/tiny.onnx"] = data
    url = http_server.url("/models/tiny.onnx")
    r = vv("--json", "add", url, "--name", "acme/tiny", "--version", "2")
    assert r.code == 0, r
    [entry] = yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"]
    assert entry["name"] == "acme/tiny" and entry["version"] == "2"
    assert entry["sources"][0] == url
    assert entry["digest"] == str(hash_bytes(data)) and entry["size"] == len(data)
    assert entry.get("file") == "tiny.onnx"
    assert has_blob(vv_home, data)


def test_add_url_of_bytes_already_stored_counts_no_new_blob(
    http_server: FaultyHTTPServer, vv, vv_project: Path, vv_home: Path, tmp_path: Path
) -> None:
    """The digest of a URL is unknown until its bytes arrive: when they turn out to be a blob
    the store has, they were fetched but the blob is not new."""
    data = payload(30 * KiB, 88)
    local = tmp_path / "tiny.onnx"
    local.write_bytes(data)
    first = vv("--json", "add", str(local), "--name", "local")
    assert first.code == 0 and first.json()[0]["new_blobs"] == 1, first
    http_server.files["/tiny.onnx"] = data
    again = vv("--json", "add", http_server.url("/tiny.onnx"), "--name", "remote")
    assert again.code == 0, again
    assert again.json()[0]["new_blobs"] == 0
    assert len(blob_files(vv_home)) == 1


def test_add_url_needs_a_name(http_server: FaultyHTTPServer, vv, vv_project: Path) -> None:
    http_server.files["/x"] = b"x"
    r = vv("add", http_server.url("/x"))
    assert r.code == 2, r
    assert http_server.requests == []


# --- credentials ------------------------------------------------------------------------------


def _no_secret_anywhere(stdout: str, stderr: str, project: Path, store: Path, secret: str) -> None:
    assert secret not in stdout and secret not in stderr
    for f in [project / "vvstore.yaml", project / "vvstore.lock", store / "audit.log"]:
        if f.exists():
            assert secret not in f.read_text(), f
    for p in (store / "tmp").glob("*.json"):
        assert secret not in p.read_text(), p


def test_add_with_userinfo_records_no_credentials(
    http_server: FaultyHTTPServer, vv_project: Path, vv_home: Path, fast_retries: None
) -> None:
    data = payload(4 * KiB, 88)
    http_server.files["/x.bin"] = data
    url = f"http://user:s3cr3tpw@127.0.0.1:{http_server.port}/x.bin"
    res = invoke(vv_project, "-v", "add", url, "--name", "x")
    _no_secret_anywhere(res.stdout, res.stderr, vv_project, vv_home, "s3cr3tpw")
    assert res.exit_code == 0, res.output  # the credentials serve the download, never the record
    [entry] = yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"]
    assert entry["sources"] == [http_server.url("/x.bin")]
    assert entry["digest"] == str(hash_bytes(data))
    res = invoke(vv_project, "-v", "--json", "fetch")
    _no_secret_anywhere(res.stdout, res.stderr, vv_project, vv_home, "s3cr3tpw")


def test_failed_add_with_userinfo_shows_no_credentials(
    http_server: FaultyHTTPServer, vv_project: Path, vv_home: Path, fast_retries: None
) -> None:
    url = f"http://user:s3cr3tpw@127.0.0.1:{http_server.port}/missing.bin?token=t0k3n"
    res = invoke(vv_project, "-v", "add", url, "--name", "x")
    assert res.exit_code == 6, res.output
    for secret in ("s3cr3tpw", "t0k3n"):
        _no_secret_anywhere(res.stdout, res.stderr, vv_project, vv_home, secret)
    assert yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"] == []


# --- progress on a terminal -------------------------------------------------------------------


def on_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal, as for a person at one; returns the
    exit code and everything printed."""
    import fcntl
    import pty
    import struct
    import termios

    main, child = pty.openpty()
    # a real terminal has a size; tqdm draws nothing on a zero-column one
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env)
    os.close(child)
    out = bytearray()
    try:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            out += data
    finally:
        os.close(main)
    return proc.wait(timeout=60), out.decode(errors="replace")


@pytest.mark.parametrize("quiet", [False, True])
def test_terminal_shows_a_bar_per_large_file_beside_the_total(
    http_server: FaultyHTTPServer, vvstore_cmd: list[str], vv_project: Path, vv_home: Path,
    quiet: bool,
) -> None:
    big, small = payload(64 * MiB + 1, 30), payload(100 * KiB, 31)
    http_server.files["/big.bin"], http_server.files["/small.bin"] = big, small
    write_models(vv_project, [model("big", http_server.url("/big.bin"), data=big),
                              model("small", http_server.url("/small.bin"), data=small)])
    env = cli_env(vv_home, TERM="xterm")
    argv = [*vvstore_cmd, "-C", str(vv_project), *(["-q"] if quiet else []), "fetch"]
    code, out = on_terminal(argv, env)
    assert code == 0, out
    assert has_blob(vv_home, big) and has_blob(vv_home, small)
    bar = re.compile(r"(\S+): +\d+%\|")  # tqdm: "DESC:  42%|####  | ..."
    shown = set(bar.findall(out))
    if quiet:
        assert shown == set(), out
    else:
        assert {"fetching", "big@1"} <= shown, out
        assert "small@1" not in shown  # small files get no bar of their own
