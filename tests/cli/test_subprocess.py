"""The real `vvstore` executable in a subprocess: bytes on stdout, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import blake3
import pytest

DATA = os.urandom(300_000) + b"\r\n\x00\xff"


@pytest.fixture
def env(vv_home: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "VVSTORE_FAILPOINTS"}
    e["VVSTORE_HOME"] = str(vv_home)
    return e


@pytest.fixture
def vv(vvstore_cmd: list[str], env: dict[str, str], tmp_path: Path):
    project = tmp_path / "proj"
    project.mkdir()

    def run(
        *args: str, code: int = 0, cwd: Path = project, extra_env: dict[str, str] | None = None
    ):
        proc = subprocess.run(
            [*vvstore_cmd, *args],
            cwd=cwd,
            env={**env, **(extra_env or {})},
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == code, (
            proc.returncode,
            proc.stdout[:2000],
            proc.stderr.decode(errors="replace"),
        )
        if "-v" not in args:
            assert b"Traceback" not in proc.stderr
        return proc

    run.project = project  # type: ignore[attr-defined]
    return run


def test_round_trip_through_the_executable(vv, vv_home: Path) -> None:
    project: Path = vv.project
    assert json.loads(vv("--json", "init").stdout)["created"] is True
    (project / "model.onnx").write_bytes(DATA)
    [doc] = json.loads(vv("--json", "add", "model.onnx", "--tag", "t").stdout)
    h = blake3.blake3(DATA).hexdigest()
    assert doc["digest"] == "blake3:" + h and doc["sources"] == ["model.onnx"]
    assert vv("cat", "model").stdout == DATA
    assert vv("cat", "model@1/model.onnx").stdout == DATA
    assert (
        Path(vv("path", "model").stdout.decode().strip())
        == vv_home / "blobs" / "blake3" / h[:2] / h[2:]
    )
    docs = json.loads(vv("--json", "ls").stdout)
    assert [(d["ref"], d["present"]) for d in docs] == [("model@1", True)]
    assert json.loads(vv("--json", "show", "model").stdout)["size"] == len(DATA)
    assert [d["ref"] for d in json.loads(vv("--json", "search", "--tag", "t").stdout)] == [
        "model@1"
    ]
    assert "add" in [e["action"] for e in json.loads(vv("--json", "log").stdout)]
    assert [d["ref"] for d in json.loads(vv("--json", "rm", "model").stdout)] == ["model@1"]
    assert json.loads(vv("--json", "ls").stdout) == []


def test_store_option_and_dash_c(vv, tmp_path: Path, vv_home: Path) -> None:
    other = tmp_path / "other"
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    vv("-C", str(vv.project), "init", cwd=elsewhere)
    (elsewhere / "w.bin").write_bytes(b"dash C")
    vv("--store", str(other), "-C", str(vv.project), "add", "w.bin", cwd=elsewhere)
    h = blake3.blake3(b"dash C").hexdigest()
    assert (other / "blobs" / "blake3" / h[:2] / h[2:]).is_file()
    assert not (vv_home / "blobs" / "blake3" / h[:2] / h[2:]).exists()
    assert (
        vv("--store", str(other), "-C", str(vv.project), "cat", "w", cwd=elsewhere).stdout
        == b"dash C"
    )


def test_bad_manifest_exit_3_without_traceback(vv) -> None:
    manifest = vv.project / "vvstore.yaml"
    manifest.write_text('models:\n  - name: a\n    version: "1"\n    size: [1]\n')
    err = vv("ls", code=3).stderr.decode()
    assert str(manifest) in err and "$.models[0].size" in err


def test_exit_codes(vv, tmp_path: Path) -> None:
    vv("init")
    (vv.project / "f.bin").write_bytes(b"f")
    vv("add", "f.bin", "--name", "../../etc", code=2)
    vv("show", "nope", code=4)
    vv("-C", str(tmp_path), "ls", code=4)  # no project there or above
    future = tmp_path / "future"
    future.mkdir()
    (future / "VERSION").write_text("9\n")
    assert b"'9'" in vv("--store", str(future), "ls", code=8).stderr


def test_verbose_traceback(vv) -> None:
    vv("init")
    assert b"Traceback" in vv("-v", "show", "nope", code=4).stderr


def test_module_entry_point(vv_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "--help"], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0 and b"Exit codes" in proc.stdout
