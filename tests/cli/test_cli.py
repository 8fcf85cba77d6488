"""Every foundation command through click's CliRunner: output, `--json`, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest
from click.testing import CliRunner, Result

from cli.main import cli


def hexof(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == code, (
        result.exit_code,
        result.stdout,
        result.stderr,
        result.exception,
    )
    if code:
        assert isinstance(result.exception, SystemExit)  # mapped, never an escaped exception
    if "-v" not in args:
        assert "Traceback" not in result.stderr
    return result


def run_json(*args: str) -> object:
    return json.loads(run("--json", *args).stdout)  # exactly one JSON document


@pytest.fixture
def project(tmp_path: Path, vv_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    monkeypatch.chdir(p)
    run("init")
    return p


DATA = bytes(range(256)) * 40 + b"\r\n\x00end"
TREE = {"config.json": b"{}", "model.safetensors": b"w" * 1000, "sub/x.txt": b"x"}


@pytest.fixture
def filled(project: Path, tmp_path: Path) -> Path:
    run("add", str(write(project / "net.onnx", DATA)), "--tag", "vision", "--version", "1.0")
    tree = tmp_path / "tiny"
    for rel, data in TREE.items():
        write(tree / rel, data)
    run("add", str(tree), "--name", "acme/tiny", "--tag", "text")
    return project


# --- init ------------------------------------------------------------------------------------


def test_init_json(tmp_path: Path, vv_home: Path) -> None:
    p = tmp_path / "p"
    p.mkdir()
    doc = run_json("-C", str(p), "init")
    assert doc == {"manifest": str(p / "vvstore.yaml"), "created": True, "store": str(vv_home)}
    assert (p / "vvstore.yaml").is_file()
    assert (vv_home / "VERSION").is_file()
    roots = list((vv_home / "roots").iterdir())
    assert [r.read_text().strip() for r in roots] == [str(p / "vvstore.lock")]
    assert run_json("-C", str(p), "init")["created"] is False


def test_init_text(tmp_path: Path, vv_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = run("init")
    assert "created" in r.stderr and str(tmp_path / "vvstore.yaml") in r.stderr
    assert r.stdout == ""


# --- add, ls, show, search ------------------------------------------------------------------


def test_add_file_json(project: Path) -> None:
    src = write(project / "resnet50.onnx", DATA)
    [doc] = run_json("add", str(src), "--tag", "vision", "--tag", "prod", "--version", "1.2.0")
    assert doc["ref"] == "resnet50@1.2.0"
    assert doc["digest"] == "blake3:" + hexof(DATA) and doc["size"] == len(DATA)
    assert doc["format"] == "onnx" and doc["tags"] == ["prod", "vision"]
    assert doc["files"] == 1 and doc["new_blobs"] == 1 and doc["link"] == "copy"
    assert doc["sources"] == ["resnet50.onnx"]
    assert "resnet50" in (project / "vvstore.yaml").read_text()


def test_add_text_and_quiet(project: Path) -> None:
    r = run("add", str(write(project / "a.bin", b"a")))
    assert "added a@1" in r.stderr
    r = run("-q", "add", str(write(project / "b.bin", b"b")))
    assert r.stderr == "" and r.stdout == ""


def test_add_directory_json(project: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tiny"
    for rel, data in TREE.items():
        write(tree / rel, data)
    [doc] = run_json("add", str(tree), "--format", "hf", "--link", "hardlink")
    assert doc["ref"] == "tiny@1" and doc["kind"] == "tree" and doc["files"] == 3
    assert doc["format"] == "hf" and doc["new_blobs"] == 4


def test_ls(filled: Path, vv_home: Path) -> None:
    docs = run_json("ls")
    assert [d["ref"] for d in docs] == ["net@1.0", "acme/tiny@1"]
    assert all(d["present"] is True for d in docs)
    assert all({"ref", "name", "version", "digest", "size", "present"} <= d.keys() for d in docs)
    assert docs[1]["kind"] == "tree" and docs[0].get("kind", "file") == "file"
    text = run("ls").stdout
    assert text.splitlines()[0].split() == [
        "NAME",
        "VERSION",
        "FORMAT",
        "KIND",
        "SIZE",
        "DIGEST",
        "PRESENT",
    ]
    assert "acme/tiny" in text
    blob = vv_home / "blobs" / "blake3" / hexof(DATA)[:2] / hexof(DATA)[2:]
    blob.unlink()
    assert [d["present"] for d in run_json("ls")] == [False, True]


def test_show(filled: Path) -> None:
    doc = run_json("show", "acme/tiny")
    assert doc["kind"] == "tree" and doc["present"] is True
    assert [f["path"] for f in doc["files"]] == sorted(TREE)
    doc = run_json("show", "net@1.0")
    assert doc["digest"] == "blake3:" + hexof(DATA) and doc["file"] == "net.onnx"
    doc = run_json("show", "blake3:" + hexof(DATA))
    assert doc["present"] is True and doc["size"] == len(DATA)
    text = run("show", "acme/tiny").stdout
    assert "files:" in text and "sub/x.txt" in text


def test_search(filled: Path) -> None:
    assert [d["ref"] for d in run_json("search", "tiny")] == ["acme/tiny@1"]
    assert [d["ref"] for d in run_json("search", "--tag", "vision")] == ["net@1.0"]
    assert [d["ref"] for d in run_json("search", "--format", "onnx")] == ["net@1.0"]
    assert run_json("search", "zzz") == []
    assert len(run_json("search")) == 2
    assert "acme/tiny" in run("search", "text").stdout


# --- path, cat -------------------------------------------------------------------------------


def test_path(filled: Path, vv_home: Path) -> None:
    doc = run_json("path", "net@1.0")
    assert doc["ref"] == "net@1.0"
    assert Path(doc["path"]) == vv_home / "blobs" / "blake3" / hexof(DATA)[:2] / hexof(DATA)[2:]
    assert Path(doc["path"]).read_bytes() == DATA
    assert Path(run("path", "acme/tiny/sub/x.txt").stdout.strip()).read_bytes() == b"x"


@pytest.mark.parametrize("ref", ["net", "net@1.0", "net@1.0/net.onnx", "net/net.onnx"])
def test_cat_single_file(filled: Path, ref: str) -> None:
    assert run("cat", ref).stdout_bytes == DATA


def test_cat_tree_file_and_digest(filled: Path) -> None:
    assert run("cat", "acme/tiny/model.safetensors").stdout_bytes == TREE["model.safetensors"]
    assert run("cat", "acme/tiny@1/sub/x.txt").stdout_bytes == b"x"
    assert run("cat", "blake3:" + hexof(DATA)).stdout_bytes == DATA


def test_cat_tree_without_file_is_a_usage_error(filled: Path) -> None:
    r = run("cat", "acme/tiny", code=2)
    assert r.stdout_bytes == b""


# --- rm, log ---------------------------------------------------------------------------------


def test_rm(filled: Path) -> None:
    gone = run_json("rm", "net@1.0")
    assert [d["ref"] for d in gone] == ["net@1.0"]
    assert [d["ref"] for d in run_json("ls")] == ["acme/tiny@1"]
    r = run("rm", "acme/tiny")
    assert "removed acme/tiny@1" in r.stderr
    assert run_json("ls") == []
    run("rm", "acme/tiny", code=4)


def test_log(filled: Path) -> None:
    entries = run_json("log")
    actions = [e["action"] for e in entries]
    assert "init" in actions and "publish" in actions and "add" in actions
    assert all({"time", "user", "host", "action", "outcome"} <= e.keys() for e in entries)
    assert len(run_json("log", "-n", "2")) == 2
    assert "add" in run("log").stdout
    run("log", "-n", "0", code=2)


# --- global options --------------------------------------------------------------------------


def test_store_option_overrides_vvstore_home(project: Path, tmp_path: Path, vv_home: Path) -> None:
    other = tmp_path / "other-store"
    [doc] = run_json("--store", str(other), "add", str(write(project / "s.bin", b"store option")))
    h = hexof(b"store option")
    assert (other / "blobs" / "blake3" / h[:2] / h[2:]).is_file()
    assert not (vv_home / "blobs" / "blake3" / h[:2] / h[2:]).exists()
    assert run("--store", str(other), "cat", "s").stdout_bytes == b"store option"


def test_vvstore_home_from_env(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "env-home"
    env = {"VVSTORE_HOME": str(home)}
    run("add", str(write(project / "e.bin", b"env store")), env=env)
    h = hexof(b"env store")
    assert (home / "blobs" / "blake3" / h[:2] / h[2:]).is_file()
    assert run("cat", "e", env=env).stdout_bytes == b"env store"


def test_dash_c(tmp_path: Path, vv_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "elsewhere"
    p.mkdir()
    monkeypatch.chdir(tmp_path)
    run("-C", str(p), "init")
    run("-C", str(p), "add", str(write(tmp_path / "c.bin", b"c")))
    assert [d["ref"] for d in run_json("-C", str(p), "ls")] == ["c@1"]
    assert "c" in (p / "vvstore.yaml").read_text()
    assert not (tmp_path / "vvstore.yaml").exists()


def test_dash_c_not_a_directory(tmp_path: Path, vv_home: Path) -> None:
    r = run("-C", str(tmp_path / "missing"), "ls", code=2)
    assert "missing" in r.stderr


def test_project_found_upward(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("add", str(write(project / "u.bin", b"u")))
    (project / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(project / "a" / "b")
    assert [d["ref"] for d in run_json("ls")] == ["u@1"]


def test_version_option() -> None:
    assert "version" in run("--version").stdout.lower()


# --- exit codes ------------------------------------------------------------------------------


def test_bad_manifest_exit_3_names_file_and_field(project: Path) -> None:
    (project / "vvstore.yaml").write_text('models:\n  - name: a\n    version: "1"\n    size: big\n')
    r = run("ls", code=3)
    assert str(project / "vvstore.yaml") in r.stderr
    assert "$.models[0].size" in r.stderr
    assert r.stdout == ""


def test_bad_manifest_float_version_hint(project: Path) -> None:
    (project / "vvstore.yaml").write_text("models:\n  - name: a\n    version: 1.10\n")
    r = run("ls", code=3)
    assert "$.models[0].version" in r.stderr and "quote" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["add", "{f}", "--name", "bad name"],
        ["add", "{f}", "--version", "1/2"],
        ["show", "bad name"],
        ["cat", "m@1/../x"],
        ["add", "{f}", "{f}", "--name", "x"],
    ],
)
def test_usage_errors_exit_2(project: Path, args: list[str]) -> None:
    f = write(project / "f.bin", b"f")
    run(*[a.replace("{f}", str(f)) for a in args], code=2)
    assert "name:" not in (project / "vvstore.yaml").read_text()


def test_unknown_store_version_exit_8(project: Path, tmp_path: Path) -> None:
    store = tmp_path / "future-store"
    store.mkdir()
    (store / "VERSION").write_text("9\n")
    r = run("--store", str(store), "ls", code=8)
    assert "'9'" in r.stderr


def test_missing_model_exit_4(project: Path) -> None:
    r = run("show", "nope", code=4)
    assert "nope" in r.stderr
    run("cat", "nope@1", code=4)
    run("path", "blake3:" + "0" * 64, code=4)


def test_missing_project_exit_4(tmp_path: Path, vv_home: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("-C", str(empty), "ls", code=4)
    assert "vvstore init" in r.stderr


def test_missing_path_exit_4(project: Path) -> None:
    run("add", str(project / "nope.bin"), code=4)


def test_integrity_exit_5(filled: Path) -> None:
    path = Path(run("path", "net@1.0").stdout.strip())
    os.chmod(path, 0o644)
    path.write_bytes(b"short")
    run("cat", "net@1.0", code=5)


def test_verbose_shows_a_traceback(project: Path) -> None:
    r = run("-v", "show", "nope", code=4)
    assert "Traceback" in r.stderr and "ModelNotFoundError" in r.stderr
