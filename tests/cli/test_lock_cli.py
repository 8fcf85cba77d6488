"""`vvstore lock --check` and `vvstore fetch --locked` in a subprocess: drift, a missing or
malformed lockfile, and bare digest refs. Exit codes, what is printed, and that nothing is
written or fetched when the command refuses (the local HTTP server counts requests)."""

from __future__ import annotations

import functools
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import blake3
import pytest
import yaml

from cas.digest import hash_bytes
from cas.manager import DefaultModelManager
from tests.helpers import cli_env
from tests.servers.http_server import FaultyHTTPServer

pytestmark = pytest.mark.timeout(90)

KiB = 1024


@functools.cache
def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


WEB, OTHER, EXTRA, MOVED = (payload(8 * KiB, s) for s in (1, 2, 3, 4))


@pytest.fixture
def vv(vvstore_cmd: list[str]):
    """`vvstore ARGS` in `cwd` with `VVSTORE_HOME=store`; checks exit code, no traceback."""

    def run(*args: str, cwd: Path, store: Path, code: int = 0, text: bool = True) -> Any:
        env = cli_env(store)
        proc = subprocess.run(
            [*vvstore_cmd, *args], cwd=cwd, env=env, capture_output=True, text=text, timeout=60
        )
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        assert proc.returncode == code, (args, proc.returncode, proc.stdout[:2000], err)
        assert "Traceback" not in err, err
        return proc

    return run


@pytest.fixture
def locked(http_server: FaultyHTTPServer, tmp_path: Path) -> Path:
    """A project whose manifest and lockfile agree: `web` and `other`, both served over HTTP."""
    http_server.files.update(
        {"/web.bin": WEB, "/other.bin": OTHER, "/extra.bin": EXTRA, "/moved/web.bin": WEB}
    )
    project = tmp_path / "P"
    m = DefaultModelManager(project, tmp_path / "S1")
    m.init()
    m.add([http_server.url("/web.bin")], name="web")
    m.add([http_server.url("/other.bin")], name="other")
    assert m.drift() == []
    return project


def read_manifest(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "vvstore.yaml").read_text())


def write_manifest(project: Path, doc: dict[str, Any]) -> None:
    (project / "vvstore.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def snapshot(project: Path) -> dict[str, tuple[bytes, int, int]]:
    """Bytes, inode and mtime of the manifest and the lockfile: any write changes one of them."""
    out = {}
    for name in ("vvstore.yaml", "vvstore.lock"):
        p = project / name
        if p.exists():
            st = p.stat()
            out[name] = (p.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def blob_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "blobs").rglob("*") if p.is_file()) if store.exists() else []


# --- drift --------------------------------------------------------------------------------------


def _added(doc: dict[str, Any], srv: FaultyHTTPServer) -> str:
    doc["models"].append({"name": "extra", "version": "1", "sources": [srv.url("/extra.bin")]})
    return "+ extra@1 (in manifest, not locked)"


def _removed(doc: dict[str, Any], srv: FaultyHTTPServer) -> str:
    doc["models"] = [m for m in doc["models"] if m["name"] != "other"]
    return "- other@1 (locked, not in manifest)"


def _version(doc: dict[str, Any], srv: FaultyHTTPServer) -> str:
    web = next(m for m in doc["models"] if m["name"] == "web")
    web["version"] = "2"
    return "~ web: version 1 (locked) -> 2 (manifest)"


def _source(doc: dict[str, Any], srv: FaultyHTTPServer) -> str:
    web = next(m for m in doc["models"] if m["name"] == "web")
    web["sources"] = [srv.url("/moved/web.bin")]
    return (
        f"~ web@1: source [{srv.url('/web.bin')}] (locked) -> "
        f"[{srv.url('/moved/web.bin')}] (manifest)"
    )


def _digest(doc: dict[str, Any], srv: FaultyHTTPServer) -> str:
    web = next(m for m in doc["models"] if m["name"] == "web")
    web["digest"] = str(hash_bytes(MOVED))
    return f"~ web@1: digest {hash_bytes(WEB)} (locked) -> {hash_bytes(MOVED)} (manifest)"


DRIFTS = {
    "added": _added,
    "removed": _removed,
    "version": _version,
    "source": _source,
    "digest": _digest,
}


@pytest.mark.parametrize("kind", DRIFTS)
def test_drift_lock_check_exit_1_and_fetch_locked_exit_3_touch_nothing(
    vv, locked: Path, http_server: FaultyHTTPServer, tmp_path: Path, kind: str
) -> None:
    doc = read_manifest(locked)
    line = DRIFTS[kind](doc, http_server)
    write_manifest(locked, doc)
    before = snapshot(locked)
    s1, s2 = tmp_path / "S1", tmp_path / "S2"
    blobs_before = blob_files(s1)
    http_server.reset_counters()

    r = vv("lock", "--check", cwd=locked, store=s1, code=1)
    assert line in r.stdout.splitlines(), (r.stdout, r.stderr)
    assert len(r.stdout.splitlines()) == 1, r.stdout  # exactly that drift, nothing else on stdout
    assert snapshot(locked) == before

    r = vv("--json", "lock", "--check", cwd=locked, store=s1, code=1)
    assert json.loads(r.stdout)["drift"] == [line] and json.loads(r.stdout)["in_sync"] is False
    assert snapshot(locked) == before

    # a fresh store, so anything fetch --locked did not refuse would show up as a request
    r = vv("fetch", "--locked", cwd=locked, store=s2, code=3)
    assert line in r.stderr and "vvstore.lock" in r.stderr and "vvstore lock" in r.stderr, r.stderr
    assert r.stdout == ""
    assert snapshot(locked) == before
    assert http_server.requests == []
    assert blob_files(s2) == [] and blob_files(s1) == blobs_before


def test_in_sync_lock_check_exit_0_and_writes_nothing(vv, locked: Path, tmp_path: Path) -> None:
    before = snapshot(locked)
    r = vv("lock", "--check", cwd=locked, store=tmp_path / "S1")
    assert r.stdout == "" and "in sync" in r.stderr
    r = vv("lock", cwd=locked, store=tmp_path / "S1")
    assert snapshot(locked) == before  # nothing changed: not even rewritten


def test_lock_resolves_the_drift_then_check_passes(
    vv, locked: Path, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    doc = read_manifest(locked)
    _added(doc, http_server)
    _removed(doc, http_server)
    write_manifest(locked, doc)
    vv("lock", cwd=locked, store=tmp_path / "S1")
    vv("lock", "--check", cwd=locked, store=tmp_path / "S1")
    text = (locked / "vvstore.lock").read_text()
    assert "extra" in text and '"other"' not in text
    assert blake3.blake3(EXTRA).hexdigest() in text


# --- no lockfile --------------------------------------------------------------------------------


def test_fetch_locked_without_a_lockfile_exit_4_with_a_hint(
    vv, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    project = tmp_path / "P"
    project.mkdir()
    http_server.files["/web.bin"] = WEB
    write_manifest(
        project,
        {"models": [{"name": "web", "version": "1", "sources": [http_server.url("/web.bin")]}]},
    )
    before = snapshot(project)
    r = vv("fetch", "--locked", cwd=project, store=tmp_path / "S", code=4)
    assert "vvstore lock" in r.stderr and "vvstore.lock" in r.stderr, r.stderr
    assert not (project / "vvstore.lock").exists() and snapshot(project) == before
    assert http_server.requests == [] and blob_files(tmp_path / "S") == []


# --- a malformed lockfile -----------------------------------------------------------------------

SECRET = "hunter2pw"


def _bad_toml(text: str) -> tuple[str, str]:
    return text + "\n[[models\nname = \n", "not valid TOML"


def _traversal(text: str) -> tuple[str, str]:
    bad = text.replace('path = "web.bin"', 'path = "../../etc/passwd"')
    return bad, "$.models[1].files[0].path"


def _credential(text: str) -> tuple[str, str]:
    # the file-level source of `web` (models are sorted: other, web)
    head, sep, tail = text.partition('[[models.files]]\npath = "web.bin"')
    tail = tail.replace("http://127.0.0.1", f"https://u:{SECRET}@127.0.0.1", 1)
    return head + sep + tail, "$.models[1].files[0].sources[0]"


BAD = {"toml": _bad_toml, "traversal": _traversal, "credential": _credential}


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize(
    "command",
    [
        ("fetch", "--locked"),
        ("lock", "--check"),
        ("lock",),
        ("fetch",),
        ("add", "{extra}", "--name", "extra"),
        ("rm", "other"),
    ],
    ids=["fetch-locked", "lock-check", "lock", "fetch", "add", "rm"],
)
def test_malformed_lockfile_exit_3_names_the_field(
    vv,
    locked: Path,
    http_server: FaultyHTTPServer,
    tmp_path: Path,
    kind: str,
    command: tuple[str, ...],
) -> None:
    lockfile = locked / "vvstore.lock"
    bad, field = BAD[kind](lockfile.read_text())
    assert bad != lockfile.read_text()
    lockfile.write_text(bad)
    before = snapshot(locked)
    http_server.reset_counters()
    command = tuple(c.format(extra=http_server.url("/extra.bin")) for c in command)
    r = vv(*command, cwd=locked, store=tmp_path / "S2", code=3)
    assert str(lockfile) in r.stderr and field in r.stderr, r.stderr
    assert SECRET not in r.stderr + r.stdout
    assert snapshot(locked) == before
    assert http_server.requests == [] and blob_files(tmp_path / "S2") == []


def test_lock_check_without_a_lockfile(vv, http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    project, store = tmp_path / "P", tmp_path / "S"
    project.mkdir()
    write_manifest(project, {"models": []})
    vv("lock", "--check", cwd=project, store=store)  # nothing wanted, nothing locked: in sync
    http_server.files["/web.bin"] = WEB
    write_manifest(
        project,
        {"models": [{"name": "web", "version": "1", "sources": [http_server.url("/web.bin")]}]},
    )
    r = vv("lock", "--check", cwd=project, store=store, code=1)
    assert r.stdout.splitlines() == ["+ web@1 (in manifest, not locked)"]
    assert not (project / "vvstore.lock").exists() and http_server.requests == []


def test_plain_fetch_and_rm_keep_the_lockfile_in_sync(
    vv, locked: Path, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    """Plain `fetch` locks new and changed entries; `rm` drops the model from the lockfile."""
    s1 = tmp_path / "S1"
    doc = read_manifest(locked)
    _added(doc, http_server)
    _source(doc, http_server)
    write_manifest(locked, doc)
    vv("lock", "--check", cwd=locked, store=s1, code=1)
    vv("fetch", cwd=locked, store=s1)
    vv("lock", "--check", cwd=locked, store=s1)
    text = (locked / "vvstore.lock").read_text()
    assert http_server.url("/moved/web.bin") in text and http_server.url("/web.bin") not in text
    assert blake3.blake3(EXTRA).hexdigest() in text
    vv("rm", "other", cwd=locked, store=s1)
    vv("lock", "--check", cwd=locked, store=s1)
    assert '"other"' not in (locked / "vvstore.lock").read_text()


def test_credentials_never_reach_manifest_or_lockfile(
    vv, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    project, store = tmp_path / "P", tmp_path / "S"
    project.mkdir()
    http_server.files["/web.bin"] = WEB
    url = http_server.url("/web.bin").replace("http://", f"http://user:{SECRET}@")
    vv("init", cwd=project, store=store)
    r = vv(
        "add", f"{url}?X-Amz-Signature={SECRET}s&keep=1", "--name", "web", cwd=project, store=store
    )
    assert SECRET not in r.stderr + r.stdout
    for name in ("vvstore.yaml", "vvstore.lock"):
        text = (project / name).read_text()
        assert SECRET not in text and "user" not in text, name
        assert f"{http_server.url('/web.bin')}?keep=1" in text
    vv("lock", "--check", cwd=project, store=store)


def test_traversal_in_a_tree_lockfile_touches_nothing_outside(
    vv, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    """A tree model's file path `../x` in the lockfile: refused before any byte is written."""
    project = tmp_path / "deep" / "P"
    (project / "snap").mkdir(parents=True)
    (project / "snap" / "a.bin").write_bytes(WEB)
    m = DefaultModelManager(project, tmp_path / "S1")
    m.init()
    m.add([str(project / "snap")], name="snap")
    lockfile = project / "vvstore.lock"
    lockfile.write_text(lockfile.read_text().replace('path = "a.bin"', 'path = "../../escape.bin"'))
    before = snapshot(project)
    r = vv("fetch", "--locked", cwd=project, store=tmp_path / "S2", code=3)
    assert "$.models[0].files[0].path" in r.stderr, r.stderr
    assert (
        not (tmp_path / "escape.bin").exists() and not (tmp_path / "deep" / "escape.bin").exists()
    )
    assert snapshot(project) == before


# --- bare digest refs ---------------------------------------------------------------------------


def test_path_and_cat_of_a_bare_digest(vv, tmp_path: Path) -> None:
    project, store = tmp_path / "P", tmp_path / "S"
    project.mkdir()
    data = payload(5 * KiB, 9) + b"\r\n\x00\xff"
    (project / "model.onnx").write_bytes(data)
    vv("init", cwd=project, store=store)
    vv("add", "model.onnx", cwd=project, store=store)
    h = blake3.blake3(data).hexdigest()
    ref = f"blake3:{h}"
    blob = store / "blobs" / "blake3" / h[:2] / h[2:]
    assert Path(vv("path", ref, cwd=project, store=store).stdout.strip()) == blob
    assert vv("cat", ref, cwd=project, store=store, text=False).stdout == data
    # a bare digest needs no project, and so no model name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert Path(vv("path", ref, cwd=elsewhere, store=store).stdout.strip()) == blob
    assert vv("cat", ref, cwd=elsewhere, store=store, text=False).stdout == data
    # a digest the store does not hold: not found
    absent = "blake3:" + blake3.blake3(b"absent").hexdigest()
    vv("path", absent, cwd=elsewhere, store=store, code=4)
    vv("cat", absent, cwd=elsewhere, store=store, code=4, text=False)


def test_path_of_a_file_inside_a_tree_by_digest(vv, tmp_path: Path) -> None:
    project, store = tmp_path / "P", tmp_path / "S"
    (project / "snap" / "sub").mkdir(parents=True)
    (project / "snap" / "sub" / "w.bin").write_bytes(OTHER)
    (project / "snap" / "config.json").write_bytes(b"{}")
    vv("init", cwd=project, store=store)
    vv("add", "snap", cwd=project, store=store)
    tree = yaml.safe_load((project / "vvstore.yaml").read_text())["models"][0]["digest"]
    out = vv("cat", f"{tree}/sub/w.bin", cwd=tmp_path, store=store, text=False).stdout
    assert out == OTHER
