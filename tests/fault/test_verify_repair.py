"""`vvstore verify [--repair] [REF...]` in a subprocess against a store the test damages: a byte
flipped in a blob, a blob replaced by a tampered copy, a blob deleted. Bad blobs go to
quarantine/ (exit 5); `--repair` fetches them again from their sources (the local HTTP server,
moto's S3), or fails naming what it could not heal."""

from __future__ import annotations

import functools
import json
import os
import random
import stat
import subprocess
from pathlib import Path
from typing import Any

import blake3
import pytest
import yaml

from cas.digest import hash_bytes
from tests.helpers import cli_env
from tests.servers.hf_hub import FakeHub
from tests.servers.http_server import FaultyHTTPServer
from tests.servers.s3 import MotoS3

pytestmark = pytest.mark.timeout(90)

KiB = 1024
BUCKET = "models"
VERIFY_KEYS = {"checked", "bytes", "bad", "missing", "repaired", "errors", "ok"}


@functools.cache
def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


WEB, LOCAL, S3_FILE = payload(24 * KiB, 1), payload(6 * KiB, 2), payload(16 * KiB, 3)
SNAP = {
    "config.json": b'{"model_type": "tiny"}',
    "w/a.bin": payload(10 * KiB, 4),
    "w/b.bin": payload(3 * KiB, 5),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "P"
    p.mkdir()
    return p


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "S"


@pytest.fixture
def vv(vvstore_cmd: list[str], project: Path, store: Path):
    """`vvstore ARGS` in the project with `VVSTORE_HOME=store`; checks exit code, no traceback.
    The environment (moto's AWS_* from the `s3` fixture) is inherited."""

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        env = cli_env(store)
        proc = subprocess.run(
            [*vvstore_cmd, *args], cwd=project, env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return run


def blob(store: Path, data: bytes) -> Path:
    h = blake3.blake3(data).hexdigest()
    return store / "blobs" / "blake3" / h[:2] / h[2:]


def digest(data: bytes) -> str:
    return str(hash_bytes(data))


def flip_byte(path: Path, offset: int = 0) -> bytes:
    """chmod u+w, flip one byte in place, chmod back; returns the damaged bytes."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(mode | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))
    path.chmod(mode)
    return path.read_bytes()


def sound(store: Path, data: bytes) -> bool:
    """The blob is in blobs/ with exactly these bytes, read-only as the store publishes it."""
    p = blob(store, data)
    return p.is_file() and p.read_bytes() == data and stat.S_IMODE(p.stat().st_mode) & 0o222 == 0


def quarantined(store: Path) -> dict[str, tuple[bytes, str]]:
    """quarantine/: content by file name, with the text of its `.reason` note."""
    q = store / "quarantine"
    return (
        {
            p.name: (p.read_bytes(), (q / f"{p.name}.reason").read_text())
            for p in q.iterdir()
            if not p.name.endswith(".reason")
        }
        if q.exists()
        else {}
    )


def verify_json(vv, *args: str, code: int = 0) -> dict[str, Any]:
    doc = json.loads(vv("--json", "verify", *args, code=code).stdout)
    assert set(doc) == VERIFY_KEYS, doc
    return doc


def gets(srv: FaultyHTTPServer) -> list[str]:
    return [p for method, p, _, _ in srv.requests if method == "GET"]


@pytest.fixture
def web_project(vv, http_server: FaultyHTTPServer, project: Path, store: Path) -> None:
    """`web` from the HTTP server, `local` from a file in the project."""
    http_server.files["/web.bin"] = WEB
    (project / "local.bin").write_bytes(LOCAL)
    vv("init")
    vv("add", http_server.url("/web.bin"), "--name", "web")
    vv("add", "local.bin", "--name", "local")


# --- HTTP ---------------------------------------------------------------------------------------


def test_flipped_byte_verify_exit_5_quarantines_then_repair_fetches_it_from_http(
    vv, web_project: None, http_server: FaultyHTTPServer, store: Path
) -> None:
    damaged = flip_byte(blob(store, WEB), offset=1234)
    r = vv("verify", code=5)
    assert digest(WEB) in r.stderr and "quarantine" in r.stderr, r.stderr
    assert not blob(store, WEB).exists()
    [(name, (content, reason))] = quarantined(store).items()
    assert content == damaged and name.startswith(blake3.blake3(damaged).hexdigest())
    assert digest(WEB) in reason
    assert sound(store, LOCAL)  # the good blob is left alone

    http_server.reset_counters()
    doc = verify_json(vv, "--repair")
    assert doc["ok"] is True and doc["repaired"] == [digest(WEB)] and doc["errors"] == []
    assert gets(http_server) == ["/web.bin"]
    assert sound(store, WEB)
    doc = verify_json(vv)
    assert doc["ok"] is True and doc["bad"] == [] and doc["checked"] == 2
    vv("lock", "--check")


def test_repair_in_one_run_quarantines_and_refetches(
    vv, web_project: None, http_server: FaultyHTTPServer, store: Path
) -> None:
    flip_byte(blob(store, WEB), offset=len(WEB) - 1)
    actual = "blake3:" + blake3.blake3(blob(store, WEB).read_bytes()).hexdigest()
    http_server.reset_counters()
    doc = verify_json(vv, "--repair")
    assert doc["bad"] == [{"digest": digest(WEB), "actual": actual}]
    assert doc["repaired"] == [digest(WEB)] and doc["ok"] is True
    assert gets(http_server) == ["/web.bin"]
    assert sound(store, WEB) and len(quarantined(store)) == 1


def test_tampered_copy_placed_in_blobs_is_found(
    vv, web_project: None, store: Path, tmp_path: Path
) -> None:
    """The issue's wording: a copy with one byte flipped, placed in blobs/ by the test."""
    target = blob(store, LOCAL)
    copy = tmp_path / "copy"
    data = bytearray(LOCAL)
    data[0] ^= 0xFF
    copy.write_bytes(bytes(data))
    copy.chmod(0o444)
    os.replace(copy, target)
    doc = verify_json(vv, code=5)
    assert [b["digest"] for b in doc["bad"]] == [digest(LOCAL)] and doc["ok"] is False
    assert not target.exists()
    # the local source is still in the project: repair copies it back
    doc = verify_json(vv, "--repair")
    assert doc["ok"] is True and doc["repaired"] == [digest(LOCAL)]
    assert sound(store, LOCAL)


def test_deleted_referenced_blob_verify_ref_missing_then_repair_refetches(
    vv, web_project: None, http_server: FaultyHTTPServer, store: Path
) -> None:
    p = blob(store, WEB)
    p.unlink()
    doc = verify_json(vv, "web", code=4)  # named: an absent blob is missing
    assert doc["missing"] == [digest(WEB)] and doc["checked"] == 0 and doc["ok"] is False
    http_server.reset_counters()
    doc = verify_json(vv, "--repair")
    assert doc["repaired"] == [digest(WEB)] and doc["missing"] == [digest(WEB)] and doc["ok"]
    assert gets(http_server) == ["/web.bin"]
    assert sound(store, WEB)
    assert verify_json(vv, "web")["ok"] is True


def test_repair_whose_source_is_gone_fails_and_says_so(
    vv, web_project: None, http_server: FaultyHTTPServer, store: Path
) -> None:
    flip_byte(blob(store, WEB))
    del http_server.files["/web.bin"]
    r = vv("--json", "verify", "--repair", code=6)
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["repaired"] == []
    assert [b["digest"] for b in doc["bad"]] == [digest(WEB)]
    assert doc["errors"] and doc["errors"][0]["ref"].startswith("web@1")
    assert "web@1" in r.stderr
    assert not blob(store, WEB).exists()  # never a wrong blob back in blobs/
    assert sound(store, LOCAL)


# --- verify REF, and the JSON shape ---------------------------------------------------------------


def test_verify_ref_checks_only_that_models_blobs(
    vv, web_project: None, project: Path, store: Path
) -> None:
    for path, data in SNAP.items():
        (project / "snap" / path).parent.mkdir(parents=True, exist_ok=True)
        (project / "snap" / path).write_bytes(data)
    vv("add", "snap")
    everything = verify_json(vv)
    assert everything["checked"] == 2 + len(SNAP) + 1  # web, local, the files and the tree doc
    assert everything["bytes"] == sum(
        p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file()
    )

    doc = verify_json(vv, "web")
    assert doc["checked"] == 1 and doc["bytes"] == len(WEB)
    doc = verify_json(vv, "snap@1")
    assert doc["checked"] == len(SNAP) + 1
    tree_hex = yaml.safe_load((project / "vvstore.yaml").read_text())["models"][-1]["digest"][7:]
    tree_blob = store / "blobs" / "blake3" / tree_hex[:2] / tree_hex[2:]
    assert doc["bytes"] == sum(map(len, SNAP.values())) + tree_blob.stat().st_size

    # damage `local`: verifying `web` alone neither finds nor moves it
    flip_byte(blob(store, LOCAL))
    doc = verify_json(vv, "web")
    assert doc["ok"] is True and doc["checked"] == 1
    assert blob(store, LOCAL).exists() and quarantined(store) == {}
    doc = verify_json(vv, "local", code=5)
    assert doc["checked"] == 1 and [b["digest"] for b in doc["bad"]] == [digest(LOCAL)]
    vv("verify", "nope", code=4)


def test_verify_json_shape(vv, web_project: None, store: Path) -> None:
    doc = verify_json(vv)
    assert doc == {
        "checked": 2,
        "bytes": len(WEB) + len(LOCAL),
        "bad": [],
        "missing": [],
        "repaired": [],
        "errors": [],
        "ok": True,
    }
    flip_byte(blob(store, WEB))
    doc = verify_json(vv, "--jobs", "2", code=5)
    assert doc["checked"] == 2 and doc["ok"] is False and doc["repaired"] == []
    [bad] = doc["bad"]
    assert set(bad) == {"digest", "actual"} and bad["digest"] == digest(WEB)
    assert bad["actual"].startswith("blake3:") and bad["actual"] != bad["digest"]
    assert isinstance(doc["bytes"], int) and doc["missing"] == [] and doc["errors"] == []


# --- S3 -----------------------------------------------------------------------------------------


def test_repair_from_s3_a_file_a_tree_file_and_the_tree_document(
    vv, s3: MotoS3, project: Path, store: Path
) -> None:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="x/s3.onnx", Body=S3_FILE)
    for path, data in SNAP.items():
        client.put_object(Bucket=BUCKET, Key=f"snap/{path}", Body=data)
    vv("init")
    vv("add", "s3://models/x/s3.onnx", "--name", "s3m")
    vv("add", "s3://models/snap", "--name", "snap")
    snap = next(
        m
        for m in yaml.safe_load((project / "vvstore.yaml").read_text())["models"]
        if m["name"] == "snap"
    )
    tree_hex = snap["digest"][len("blake3:") :]
    tree_blob = store / "blobs" / "blake3" / tree_hex[:2] / tree_hex[2:]
    tree_bytes = tree_blob.read_bytes()
    lock_before = (project / "vvstore.lock").read_bytes()

    flip_byte(blob(store, S3_FILE), offset=7)
    flip_byte(blob(store, SNAP["w/a.bin"]), offset=3)
    flip_byte(tree_blob, offset=len(tree_bytes) // 2)
    r = vv("verify", code=5)
    for d in (digest(S3_FILE), digest(SNAP["w/a.bin"]), snap["digest"]):
        assert d in r.stderr
    assert len(quarantined(store)) == 3

    doc = verify_json(vv, "--repair")
    assert doc["ok"] is True and doc["errors"] == []
    assert sorted(doc["repaired"]) == sorted(
        [digest(S3_FILE), digest(SNAP["w/a.bin"]), snap["digest"]]
    )
    assert sound(store, S3_FILE) and sound(store, SNAP["w/a.bin"])
    assert tree_blob.read_bytes() == tree_bytes
    assert verify_json(vv)["checked"] == 1 + len(SNAP) + 1
    assert (project / "vvstore.lock").read_bytes() == lock_before  # repair changes no pin


# --- Hugging Face: repair from the commit the lockfile pinned -----------------------------------


def test_repair_after_the_branch_moved_uses_the_locked_commit(
    vv, fake_hub: FakeHub, project: Path, store: Path
) -> None:
    """The manifest says `@main`; the lockfile pins the commit. Once `main` moved on, the branch
    no longer has the bytes, but the pinned commit does: repair heals from it."""
    files = {"model.safetensors": payload(8 * KiB, 6), "config.json": b"{}"}
    fake_hub.add_repo("org/repo")
    fake_hub.commit("org/repo", files, message="v1")
    (project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "org/tiny",
                        "version": "1",
                        "sources": ["hf://org/repo@main/model.safetensors"],
                    }
                ]
            }
        )
    )
    vv("lock")
    fake_hub.commit("org/repo", {**files, "model.safetensors": payload(8 * KiB, 60)}, message="v2")
    flip_byte(blob(store, files["model.safetensors"]), offset=5)
    doc = verify_json(vv, "--repair")
    assert doc["ok"] is True and doc["repaired"] == [digest(files["model.safetensors"])], doc
    assert sound(store, files["model.safetensors"])


def test_plain_verify_reports_a_missing_referenced_blob(
    vv, web_project: None, store: Path
) -> None:
    """Regression: a full scan re-hashes only what is present, so after a quarantine a plain
    `vvstore verify` said ok while the project's blob was gone."""
    blob(store, WEB).unlink()
    doc = verify_json(vv, code=4)
    assert doc["missing"] == [digest(WEB)] and doc["ok"] is False
