"""Names and paths are data, never trusted paths: traversal, odd characters and symlinks."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import blake3
import pytest
from click.testing import CliRunner, Result

from cas.blobs import BlobStore
from cas.digest import Digest
from cas.errors import InvalidNameError
from cas.manager import DefaultModelManager
from cas.walk import walk_files
from cli.main import cli


def hexof(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def blob_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "blobs").rglob("*") if not p.is_dir())


def run(*args: str, code: int = 0) -> Result:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
    assert "Traceback" not in r.stderr
    return r


@pytest.fixture
def project(tmp_path: Path, vv_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    monkeypatch.chdir(p)
    run("init")
    return p


# --- names from the command line ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../etc", "/etc/passwd", "a/../../b", "C:\\x", "a\x00b", "x" * 300]
)
def test_add_with_traversal_name_writes_nothing(
    project: Path, vv_home: Path, tmp_path: Path, name: str
) -> None:
    manifest = (project / "vvstore.yaml").read_bytes()
    f = write(tmp_path / "f.bin", b"payload")
    run("add", str(f), "--name", name, code=2)
    assert (project / "vvstore.yaml").read_bytes() == manifest
    assert not (project / "vvstore.lock").exists()
    assert blob_files(vv_home) == []
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("cmd", ["cat", "path", "show"])
@pytest.mark.parametrize(
    "ref",
    [
        "m@1/../../etc/passwd",
        "m/../../etc/passwd",
        "m@1//etc/passwd",
        "m@1/a\\..\\..\\x",
        "m@1/\x00",
    ],
)
def test_reading_traversal_refs_is_refused(
    project: Path, tmp_path: Path, cmd: str, ref: str
) -> None:
    run("add", str(write(tmp_path / "m.bin", b"m")), "--name", "m")
    r = run(cmd, ref, code=2)
    assert r.stdout_bytes == b""


# --- names from a manifest ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ('models:\n  - name: ../x\n    version: "1"\n', "$.models[0].name"),
        ('models:\n  - name: /etc\n    version: "1"\n', "$.models[0].name"),
        ('models:\n  - name: x\n    version: "../1"\n', "$.models[0].version"),
        (
            'models:\n  - name: x\n    version: "1"\n    file: ../../etc/passwd\n',
            "$.models[0].file",
        ),
        ('models:\n  - name: x\n    version: "1"\n    file: /etc/passwd\n', "$.models[0].file"),
    ],
)
def test_manifest_with_traversal_is_exit_3(project: Path, yaml_text: str, field: str) -> None:
    (project / "vvstore.yaml").write_text(yaml_text)
    for cmd in (["ls"], ["cat", "x@1"], ["show", "x"]):
        r = run(*cmd, code=3)
        assert field in r.stderr


# --- names from a directory being added --------------------------------------------------------


BAD_FILE_NAMES = ["b\\c.bin", "b\x01c.bin", "b\nc.bin", "b\x7fc.bin"]


@pytest.mark.parametrize("bad", BAD_FILE_NAMES)
def test_directory_with_a_bad_file_name_is_refused(
    project: Path, vv_home: Path, tmp_path: Path, bad: str
) -> None:
    d = tmp_path / "model"
    write(d / "a.bin", b"a good file, sorted before the bad one")
    write(d / bad, b"bad")
    manifest = (project / "vvstore.yaml").read_bytes()
    r = run("add", str(d), code=2)
    assert repr(bad) in r.stderr or "path" in r.stderr
    assert (project / "vvstore.yaml").read_bytes() == manifest
    assert not (project / "vvstore.lock").exists()


@pytest.mark.parametrize("bad", BAD_FILE_NAMES[:2])
def test_directory_with_a_bad_file_name_publishes_no_blob(
    project: Path, vv_home: Path, tmp_path: Path, bad: str
) -> None:
    """DESIGN.md: bad names are refused *before anything touches the disk*; a good file that
    sorts before the bad one must not be stored either."""
    d = tmp_path / "model"
    write(d / "a.bin", b"a good file, sorted before the bad one")
    write(d / bad, b"bad")
    run("add", str(d), code=2)
    assert blob_files(vv_home) == []


def test_bad_subdirectory_name_is_refused(vv_manager: DefaultModelManager, tmp_path: Path) -> None:
    d = tmp_path / "model"
    write(d / "ok" / "a.bin", b"a")
    write(d / "x\\y" / "b.bin", b"b")
    with pytest.raises(InvalidNameError):
        vv_manager.add([str(d)])
    assert vv_manager.list_models() == []


# --- symlinks ----------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside"
    write(secret / "secret.txt", b"top secret, outside the model directory")
    write(secret / "deeper" / "key.pem", b"private key")
    return secret


def test_directory_symlink_inside_an_added_dir_is_skipped(
    vv_manager: DefaultModelManager,
    vv_home: Path,
    tmp_path: Path,
    outside: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = tmp_path / "model"
    write(d / "config.json", b"{}")
    os.symlink(outside, d / "escape")
    os.symlink(d, d / "loop")  # a loop must not trap the walk
    with caplog.at_level(logging.WARNING, logger="vvstore"):
        [res] = vv_manager.add([str(d)])
    tree = vv_manager.load_tree(Digest.parse(res.entry.digest or ""))
    assert [f.path for f in tree.files] == ["config.json"]
    stored = {b.parent.name + b.name for b in blob_files(vv_home)}
    assert hexof(b"top secret, outside the model directory") not in stored
    assert hexof(b"private key") not in stored
    assert any("escape" in r.getMessage() for r in caplog.records)


def test_walk_never_leaves_the_directory(tmp_path: Path, outside: Path) -> None:
    d = tmp_path / "model"
    write(d / "a" / "b.bin", b"b")
    write(d / "c.bin", b"c")
    os.symlink(outside, d / "a" / "escape")
    os.symlink(tmp_path, d / "up")
    pairs = list(walk_files(d))
    assert sorted(rel for rel, _ in pairs) == ["a/b.bin", "c.bin"]
    for rel, path in pairs:
        assert path == d / rel
        assert os.path.commonpath([d, path]) == str(d)
        assert not any(p.is_symlink() for p in [path, *path.parents] if p != path.anchor)


def test_file_symlinks_inside_the_directory_are_followed(
    vv_manager: DefaultModelManager, tmp_path: Path
) -> None:
    """Documented: file symlinks are followed (a Hugging Face snapshot is made of them)."""
    d = tmp_path / "snapshot"
    write(tmp_path / "blobs" / "abc", b"weights")
    d.mkdir()
    os.symlink(tmp_path / "blobs" / "abc", d / "model.safetensors")
    os.symlink(d / "missing", d / "dangling")
    [res] = vv_manager.add([str(d)])
    tree = vv_manager.load_tree(Digest.parse(res.entry.digest or ""))
    assert [(f.path, f.digest) for f in tree.files] == [
        ("model.safetensors", "blake3:" + hexof(b"weights"))
    ]


def test_store_does_not_follow_a_planted_blob_symlink(
    project: Path, vv_home: Path, outside: Path
) -> None:
    d = Digest(hexof(b"top secret, outside the model directory"))
    BlobStore(vv_home)
    link = vv_home / "blobs" / "blake3" / d.hex[:2] / d.hex[2:]
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside / "secret.txt", link)
    r = run("cat", str(d), code=4)
    assert b"secret" not in r.stdout_bytes


def test_tree_blob_with_traversal_path_is_refused(project: Path, vv_home: Path) -> None:
    """A tree document is data too: a path escaping it makes the tree invalid (exit 5)."""
    store = BlobStore(vv_home)
    fake = store.publish_bytes(b"x").digest
    entry = {"path": "../../etc/passwd", "digest": str(fake), "size": 1}
    doc = json.dumps({"type": "vvstore-tree", "version": 1, "files": [entry]}).encode()
    tree = store.publish_bytes(doc).digest
    (project / "vvstore.yaml").write_text(
        f'models:\n  - name: evil\n    version: "1"\n    kind: tree\n    digest: "{tree}"\n'
    )
    run("cat", "evil@1/x", code=5)
    run("cat", f"{tree}/x", code=5)
