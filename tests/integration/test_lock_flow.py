"""The lockfile end to end, as a newcomer meets it: `add` in one project and store, commit
`vvstore.yaml` and `vvstore.lock`, clone elsewhere with another store, `fetch --locked`, and get
the same bytes. Real `vvstore` subprocesses against the local HTTP server, moto's S3 and the
fake Hugging Face Hub (all on 127.0.0.1); the Python API briefly at the end."""

from __future__ import annotations

import functools
import hashlib
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import blake3
import msgspec
import pytest
import yaml

from cas.digest import hash_bytes
from cas.errors import DriftError, NotFoundError
from cas.manager import DefaultModelManager
from tests.helpers import cli_env
from tests.servers.hf_hub import FakeHub
from tests.servers.http_server import FaultyHTTPServer
from tests.servers.s3 import MotoS3

pytestmark = pytest.mark.timeout(120)

KiB = 1024
BUCKET = "models"


@functools.cache
def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def vv(vvstore_cmd: list[str]):
    """`vvstore ARGS` in a subprocess, in `cwd`, with `VVSTORE_HOME=store`; checks the exit code
    and that no traceback escaped. The environment (moto's AWS_*, the hub's HF_*) is inherited."""

    def run(
        *args: str, cwd: Path, store: Path, code: int | None = 0
    ) -> subprocess.CompletedProcess[str]:
        env = cli_env(store)
        proc = subprocess.run(
            [*vvstore_cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
        )
        if code is not None:
            assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return run


def blobs(store: Path) -> dict[str, bytes]:
    """Every blob of a store, by digest, checked to hold the bytes its name says."""
    out = {}
    for p in (store / "blobs" / "blake3").rglob("*"):
        if p.is_file():
            hexd = p.parent.name + p.name
            data = p.read_bytes()
            assert blake3.blake3(data).hexdigest() == hexd, p
            out["blake3:" + hexd] = data
    return out


def read_manifest(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "vvstore.yaml").read_text())


def write_manifest(project: Path, doc: dict[str, Any]) -> None:
    (project / "vvstore.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def entry(doc: dict[str, Any], name: str) -> dict[str, Any]:
    [e] = [m for m in doc["models"] if m["name"] == name]
    return e


def clone(src: Path, dest: Path) -> Path:
    """What `git clone` of the project gives: the manifest and the lockfile, no model bytes."""
    dest.mkdir()
    for name in ("vvstore.yaml", "vvstore.lock"):
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    return dest


def gets(srv: FaultyHTTPServer) -> list[str]:
    return [p for method, p, _, _ in srv.requests if method == "GET"]


def roots(store: Path) -> list[str]:
    return sorted(p.read_text() for p in (store / "roots").iterdir())


# --- the newcomer flow --------------------------------------------------------------------------

LOCAL = payload(24 * KiB, 1)
SNAP = {
    "config.json": b'{"model_type": "tiny"}',
    "weights/a.safetensors": payload(16 * KiB, 2),
    "weights/b.safetensors": payload(8 * KiB, 3),
}
WEB = payload(20 * KiB, 4)
S3_BYTES = payload(12 * KiB, 5)


def test_newcomer_flow_add_commit_clone_fetch_locked_gives_identical_blobs(
    vv, http_server: FaultyHTTPServer, s3: MotoS3, tmp_path: Path
) -> None:
    a, s1, s2 = tmp_path / "A", tmp_path / "S1", tmp_path / "S2"
    a.mkdir()
    # the team serves the local files from a mirror, the HTTP server
    (a / "local.onnx").write_bytes(LOCAL)
    http_server.files["/mirror/local.onnx"] = LOCAL
    for path, data in SNAP.items():
        (a / "snap" / path).parent.mkdir(parents=True, exist_ok=True)
        (a / "snap" / path).write_bytes(data)
        http_server.files[f"/mirror/snap/{path}"] = data
    http_server.files["/w/web.safetensors"] = WEB
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="x/s3.onnx", Body=S3_BYTES)

    vv("init", cwd=a, store=s1)
    vv("add", "local.onnx", cwd=a, store=s1)
    vv("add", "snap", "--name", "acme/snap", cwd=a, store=s1)
    vv("add", http_server.url("/w/web.safetensors"), "--name", "web", cwd=a, store=s1)
    vv("add", "s3://models/x/s3.onnx", "--name", "s3m", cwd=a, store=s1)
    vv("lock", "--check", cwd=a, store=s1)  # add keeps the lockfile in sync

    # people list the mirror in the manifest; the lockfile must follow before CI passes
    doc = read_manifest(a)
    entry(doc, "local")["sources"].append(http_server.url("/mirror/local.onnx"))
    entry(doc, "acme/snap")["sources"].append(http_server.url("/mirror/snap"))
    write_manifest(a, doc)
    vv("lock", "--check", cwd=a, store=s1, code=1)
    vv("lock", cwd=a, store=s1)
    first = (a / "vvstore.lock").read_bytes()
    vv("lock", cwd=a, store=s1)
    assert (a / "vvstore.lock").read_bytes() == first  # deterministic: byte-identical
    assert vv("lock", "--check", cwd=a, store=s1).stdout == ""  # in sync: no drift lines

    lock = msgspec.toml.decode(first)
    assert [m["name"] for m in lock["models"]] == ["acme/snap", "local", "s3m", "web"]
    snap = lock["models"][0]
    assert snap["kind"] == "tree" and [f["path"] for f in snap["files"]] == sorted(SNAP)
    assert snap["size"] == sum(map(len, SNAP.values()))
    for f in snap["files"]:
        assert f["hashes"]["blake3"] == blake3.blake3(SNAP[f["path"]]).hexdigest()
        assert http_server.url(f"/mirror/snap/{f['path']}") in f["sources"]

    # commit, clone elsewhere, another store
    b = clone(a, tmp_path / "B")
    http_server.reset_counters()
    vv("fetch", "--locked", cwd=b, store=s2)
    s1_blobs, s2_blobs = blobs(s1), blobs(s2)
    assert s2_blobs == s1_blobs  # same digests, byte for byte (the tree document included)
    for data in (LOCAL, WEB, S3_BYTES, *SNAP.values()):
        assert str(hash_bytes(data)) in s2_blobs
    assert sorted(gets(http_server)) == sorted(
        ["/mirror/local.onnx", "/w/web.safetensors", *(f"/mirror/snap/{p}" for p in SNAP)]
    )
    assert (b / "vvstore.lock").read_bytes() == first  # fetch --locked writes no lockfile
    vv("lock", "--check", cwd=b, store=s2)
    vv("lock", cwd=b, store=s2)
    assert (b / "vvstore.lock").read_bytes() == first  # the clone locks to the same bytes
    path = vv("path", "acme/snap/weights/b.safetensors", cwd=b, store=s2).stdout.strip()
    assert Path(path).read_bytes() == SNAP["weights/b.safetensors"]

    (b / "vvstore.lock").unlink()  # locked from scratch on another machine: the same bytes
    vv("lock", cwd=b, store=s2)
    assert (b / "vvstore.lock").read_bytes() == first

    # all present: a second fetch --locked transfers nothing
    http_server.reset_counters()
    vv("fetch", "--locked", cwd=b, store=s2)
    assert gets(http_server) == []
    assert roots(s2) == [f"{b / 'vvstore.lock'}\n"]


def test_fetch_locked_refuses_a_source_whose_bytes_changed_since_locking(
    vv, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    """A source that changed its content after locking is refused (exit 5), never stored."""
    a, s1, s2 = tmp_path / "A", tmp_path / "S1", tmp_path / "S2"
    a.mkdir()
    http_server.files["/m.bin"] = WEB
    vv("init", cwd=a, store=s1)
    vv("add", http_server.url("/m.bin"), "--name", "m", cwd=a, store=s1)
    b = clone(a, tmp_path / "B")
    http_server.files["/m.bin"] = payload(len(WEB), 77)  # the server now has other bytes
    vv("fetch", "--locked", cwd=b, store=s2, code=5)
    assert blobs(s2) == {}


# --- roots --------------------------------------------------------------------------------------


def test_lockfile_written_by_add_and_by_fetch_registers_the_project_as_a_root(
    vv, http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "proj").mkdir(parents=True)
    s1, s2 = tmp_path / "S1", tmp_path / "S2"
    http_server.files["/r.bin"] = WEB
    (work / "proj" / "f.bin").write_bytes(LOCAL)
    # -C with a relative directory: the root still holds the absolute lockfile path
    vv("-C", "proj", "init", cwd=work, store=s1)
    vv("-C", "proj", "add", "proj/f.bin", cwd=work, store=s1)
    vv("-C", "proj", "add", http_server.url("/r.bin"), "--name", "r", cwd=work, store=s1)
    lockfile = work / "proj" / "vvstore.lock"
    assert lockfile.is_file()
    assert roots(s1) == [f"{lockfile}\n"]
    assert Path(roots(s1)[0].strip()).is_absolute()

    # a clone of the manifest alone: plain `fetch` writes the lockfile and registers it
    c = tmp_path / "C"
    c.mkdir()
    doc = read_manifest(work / "proj")
    doc["models"] = [m for m in doc["models"] if m["name"] == "r"]
    write_manifest(c, doc)
    vv("fetch", cwd=c, store=s2)
    assert (c / "vvstore.lock").is_file()
    assert roots(s2) == [f"{c / 'vvstore.lock'}\n"]
    vv("lock", "--check", cwd=c, store=s2)


# --- Hugging Face: the lockfile pins commits, never branches ------------------------------------

REPO = "org/repo"
HF_FILES = {
    "config.json": b'{"model_type": "tiny"}',
    "model.safetensors": payload(8 * KiB, 6),  # LFS (over the fake hub's 1 KiB threshold)
    "extra.bin": payload(4 * KiB, 7),  # LFS
}


def test_hf_lockfile_file_sources_carry_the_commit_model_sources_the_manifest(
    vv, fake_hub: FakeHub, tmp_path: Path
) -> None:
    fake_hub.add_repo(REPO)
    sha = fake_hub.commit(REPO, HF_FILES, message="v1")
    p, s1, s2 = tmp_path / "P", tmp_path / "S1", tmp_path / "S2"
    p.mkdir()
    vv("init", cwd=p, store=s1)
    vv("add", "hf://org/repo@main/model.safetensors", "--name", "org/tiny", cwd=p, store=s1)
    # and one written by hand at a branch, locked by `vvstore lock`
    doc = read_manifest(p)
    doc["models"].append(
        {"name": "org/extra", "version": "1", "sources": ["hf://org/repo@main/extra.bin"]}
    )
    write_manifest(p, doc)
    vv("lock", "--check", cwd=p, store=s1, code=1)
    vv("lock", cwd=p, store=s1)
    vv("lock", "--check", cwd=p, store=s1)

    text = (p / "vvstore.lock").read_text()
    lock = msgspec.toml.decode(text)
    manifest = {m["name"]: m for m in read_manifest(p)["models"]}
    assert [m["name"] for m in lock["models"]] == ["org/extra", "org/tiny"]
    for m in lock["models"]:
        assert m["sources"] == manifest[m["name"]]["sources"]  # as the manifest says
        [f] = m["files"]
        assert f["sources"], m
        for source in f["sources"]:
            assert re.fullmatch(r"hf://org/repo@[0-9a-f]{40}/" + re.escape(f["path"]), source)
            assert source == f"hf://org/repo@{sha}/{f['path']}" and "@main" not in source
        assert f["hashes"]["blake3"] == blake3.blake3(HF_FILES[f["path"]]).hexdigest()
    assert lock["models"][0]["sources"] == ["hf://org/repo@main/extra.bin"]

    # main moves on: a branch in the manifest is not drift, and the lockfile keeps the old bytes
    fake_hub.commit(REPO, {**HF_FILES, "extra.bin": payload(4 * KiB, 99)}, message="v2")
    vv("lock", "--check", cwd=p, store=s1)
    vv("lock", cwd=p, store=s1)
    assert (p / "vvstore.lock").read_text() == text
    b = clone(p, tmp_path / "B")
    vv("fetch", "--locked", cwd=b, store=s2)
    got = blobs(s2)
    assert str(hash_bytes(HF_FILES["extra.bin"])) in got
    assert str(hash_bytes(HF_FILES["model.safetensors"])) in got
    assert str(hash_bytes(payload(4 * KiB, 99))) not in got


@pytest.mark.parametrize("command", [("fetch",), ("fetch", "--locked")])
def test_clone_fetch_after_the_branch_moved_gets_the_locked_bytes(
    vv, fake_hub: FakeHub, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """The manifest says `@main`, the lockfile pins the commit: once `main` moved on, a clone
    still gets the locked bytes, with plain `fetch` (the lockfile agrees with the manifest)
    as with `fetch --locked`."""
    fake_hub.add_repo(REPO)
    fake_hub.commit(REPO, HF_FILES, message="v1")
    p, s1, s2 = tmp_path / "P", tmp_path / "S1", tmp_path / "S2"
    p.mkdir()
    write_manifest(
        p,
        {
            "models": [
                {"name": "org/extra", "version": "1", "sources": ["hf://org/repo@main/extra.bin"]}
            ]
        },
    )
    vv("lock", cwd=p, store=s1)
    fake_hub.commit(REPO, {**HF_FILES, "extra.bin": payload(4 * KiB, 99)}, message="v2")
    b = clone(p, tmp_path / "B")
    vv(*command, cwd=b, store=s2)
    assert blobs(s2) == {str(hash_bytes(HF_FILES["extra.bin"])): HF_FILES["extra.bin"]}
    vv("lock", "--check", cwd=b, store=s2)


@pytest.mark.parametrize("how", ["add", "lock"])
def test_hf_lockfile_keeps_the_lfs_sha256_the_hub_offered(
    vv, fake_hub: FakeHub, tmp_path: Path, how: str
) -> None:
    """`hashes.sha256` where a source provided one, whether `add` or `lock` learnt the file."""
    fake_hub.add_repo(REPO)
    fake_hub.commit(REPO, HF_FILES, message="v1")
    p, store = tmp_path / "P", tmp_path / "S"
    p.mkdir()
    vv("init", cwd=p, store=store)
    url = "hf://org/repo@main/model.safetensors"
    if how == "add":
        vv("add", url, "--name", "org/tiny", cwd=p, store=store)
    else:
        write_manifest(p, {"models": [{"name": "org/tiny", "version": "1", "sources": [url]}]})
        vv("lock", cwd=p, store=store)
    [m] = msgspec.toml.decode((p / "vvstore.lock").read_bytes())["models"]
    data = HF_FILES["model.safetensors"]
    assert m["files"][0]["hashes"] == {
        "blake3": blake3.blake3(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


# --- the Python API -----------------------------------------------------------------------------


def test_python_api_lock_drift_fetch_locked_verify(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.files["/api.bin"] = WEB
    project, s1, s2 = tmp_path / "P", tmp_path / "S1", tmp_path / "S2"
    m = DefaultModelManager(project, s1)
    m.init()
    with pytest.raises(NotFoundError, match="vvstore lock"):
        m.fetch_locked()  # no lockfile yet
    doc = read_manifest(project)
    doc["models"] = [{"name": "api", "version": "1", "sources": [http_server.url("/api.bin")]}]
    write_manifest(project, doc)

    m = DefaultModelManager(project, s1)
    [d] = m.drift()
    assert (d.kind, d.name, d.version) == ("added", "api", "1")
    drifts, report = m.lock()
    assert [x.kind for x in drifts] == ["added"] and report is not None
    assert [r.digest for _, r in report.fetched] == [hash_bytes(WEB)]
    assert m.drift() == []
    first = m.lockfile_path.read_bytes()
    assert m.lock() == ([], None)  # nothing to fetch, nothing changed
    assert m.lockfile_path.read_bytes() == first
    assert m.lock(check=True) == ([], None)

    # a version changed by hand: drift, and fetch_locked refuses
    doc = read_manifest(project)
    doc["models"][0]["version"] = "2"
    write_manifest(project, doc)
    m2 = DefaultModelManager(project, s2)
    [d] = m2.drift()
    assert (d.kind, d.name, d.version, d.locked) == ("version", "api", "2", "1")
    http_server.reset_counters()
    with pytest.raises(DriftError, match="api"):
        m2.fetch_locked()
    assert gets(http_server) == [] and blobs(s2) == {}
    doc["models"][0]["version"] = "1"
    write_manifest(project, doc)

    # another store: fetch_locked gets exactly the locked bytes
    m2 = DefaultModelManager(project, s2)
    report = m2.fetch_locked()
    assert [r.digest for _, r in report.fetched] == [hash_bytes(WEB)] and not report.errors
    assert blobs(s2) == blobs(s1)

    # a corrupted blob: verify(repair=True) quarantines it and fetches it again
    blob = m2.store.path(hash_bytes(WEB))
    mode = blob.stat().st_mode
    blob.chmod(mode | 0o200)
    with open(blob, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    blob.chmod(mode)
    outcome = m2.verify(repair=True)
    assert outcome.ok and outcome.repaired == [str(hash_bytes(WEB))]
    assert [str(d) for d, _ in outcome.report.bad] == [str(hash_bytes(WEB))]
    assert blob.read_bytes() == WEB
    assert len(list((s2 / "quarantine").glob("*.reason"))) == 1
    assert m2.verify().ok
