"""A process killed (SIGKILL) at a named failpoint leaves no wrong blob and only debris in tmp/;
the next run, without failpoints, succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from cas.blobs import BlobStore

PUBLISH = """
import sys
from cas.blobs import BlobStore
p = BlobStore(sys.argv[1]).publish_file(sys.argv[2])
print(p.digest.hex, p.new)
"""

STORE_ENTRIES = {
    "VERSION",
    "CACHEDIR.TAG",
    "audit.log",
    "blobs",
    "tmp",
    "roots",
    "pins",
    "locks",
    "quarantine",
    "index",
}


def hexof(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def run(
    args: list[str],
    failpoints: str | None,
    cwd: Path | None = None,
    env_extra: dict[str, str] | None = None,
):
    env = {k: v for k, v in os.environ.items() if k != "VVSTORE_FAILPOINTS"}
    if failpoints:
        env["VVSTORE_FAILPOINTS"] = failpoints
    env.update(env_extra or {})
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def publish(store: Path, src: Path, failpoints: str | None = None):
    return run([sys.executable, "-c", PUBLISH, str(store), str(src)], failpoints)


def assert_no_wrong_blob_and_debris_only_in_tmp(store: Path) -> list[str]:
    """Every file in blobs/ hashes to its name; nothing but store files outside tmp/."""
    found = []
    for blob in (store / "blobs" / "blake3").rglob("*"):
        if blob.is_dir():
            continue
        hexd = blob.parent.name + blob.name
        assert hexof(blob) == hexd, f"wrong blob {blob}"
        found.append(hexd)
    top = {p.name for p in store.iterdir()}
    assert top <= STORE_ENTRIES, f"debris outside tmp/: {sorted(top - STORE_ENTRIES)}"
    for d in ("roots", "pins", "quarantine"):
        assert not (store / d).exists() or list((store / d).iterdir()) == []
    return found


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "model.bin"
    p.write_bytes(os.urandom(3 * (1 << 20) + 7))
    return p


@pytest.mark.parametrize("precreated", [True, False], ids=["existing-store", "new-store"])
@pytest.mark.parametrize("point", ["blob.before_rename", "blob.after_rename"])
def test_killed_while_publishing(tmp_path: Path, src: Path, point: str, precreated: bool) -> None:
    store = tmp_path / "store"
    if precreated:
        BlobStore(store)
    want = hexof(src)
    proc = publish(store, src, f"{point}=kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    blobs = assert_no_wrong_blob_and_debris_only_in_tmp(store)
    if point == "blob.before_rename":
        assert blobs == []
        assert list((store / "tmp").iterdir()), "the killed writer's temp file should be in tmp/"
    else:
        assert blobs == [want]
    again = publish(store, src)
    assert again.returncode == 0, again.stderr
    hexd, new = again.stdout.split()
    assert hexd == want and new == ("True" if point == "blob.before_rename" else "False")
    assert assert_no_wrong_blob_and_debris_only_in_tmp(store) == [want]


def test_killed_while_creating_the_store(tmp_path: Path, src: Path) -> None:
    """`atomic.before_rename` first fires while a new store writes CACHEDIR.TAG: a store whose
    creation was cut short must be usable by the next run, with its debris in tmp/ at most."""
    store = tmp_path / "store"
    proc = publish(store, src, "atomic.before_rename=kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (store / "VERSION").exists()
    again = publish(store, src)  # first: the store must not be left unusable
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[0] == hexof(src)
    assert assert_no_wrong_blob_and_debris_only_in_tmp(store) == [hexof(src)]


def test_killed_while_saving_the_manifest(
    tmp_path: Path, src: Path, vvstore_cmd: list[str]
) -> None:
    """`vvstore add` killed at `atomic.before_rename` (the manifest write): the old manifest is
    intact, the blob published so far is right, and running `add` again records the model."""
    store, project = tmp_path / "store", tmp_path / "proj"
    project.mkdir()
    env = {"VVSTORE_HOME": str(store)}
    assert run([*vvstore_cmd, "init"], None, project, env).returncode == 0
    before = (project / "vvstore.yaml").read_bytes()
    proc = run([*vvstore_cmd, "add", str(src)], "atomic.before_rename=kill", project, env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (project / "vvstore.yaml").read_bytes() == before
    blobs = [p for p in (store / "blobs" / "blake3").rglob("*") if p.is_file()]
    assert [b.parent.name + b.name for b in blobs] == [hexof(src)]
    assert all(hexof(b) == b.parent.name + b.name for b in blobs)
    again = run([*vvstore_cmd, "--json", "add", str(src)], None, project, env)
    assert again.returncode == 0, again.stderr
    assert hexof(src) in (project / "vvstore.yaml").read_text()
    assert list((store / "tmp").iterdir()) == []


def test_failpoints_are_inert_when_unset(tmp_path: Path, src: Path) -> None:
    proc = publish(tmp_path / "store", src, "some.other.point=kill")
    assert proc.returncode == 0 and proc.stdout.split()[0] == hexof(src)


def test_raise_failpoint(tmp_path: Path, src: Path) -> None:
    store = tmp_path / "store"
    BlobStore(store)
    proc = publish(store, src, "blob.before_rename=raise")
    assert proc.returncode == 1 and "FailpointError" in proc.stderr
    assert assert_no_wrong_blob_and_debris_only_in_tmp(store) == []
    assert list((store / "tmp").iterdir()) == []  # an exception (unlike a kill) cleans up
