"""Fetching from a local Hugging Face Hub-compatible endpoint (tests/servers/hf_hub.py) through
huggingface_hub's HfFileSystem: revisions, LFS sha256 cross-checks, whole-repo snapshots."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cas.blobs import BlobStore
from cas.digest import hash_bytes
from cas.download import FetchRequest, ModelDownloader
from cas.errors import AllSourcesFailedError, IntegrityError
from cas.retry import RetryPolicy
from cas.sources import FsspecSource, open_source
from tests.helpers import assert_blobs_sound, blob_files, has_blob, payload
from tests.servers.hf_hub import FakeHub

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

KiB = 1024
REPO = "org/repo"
SHA = re.compile(r"[0-9a-f]{40}")


FILES = {
    "config.json": b'{"model_type": "tiny"}',
    "model.safetensors": payload(64 * KiB, 1),  # LFS (larger than the hub's 1 KiB threshold)
    "tokenizer/vocab.txt": b"a\nb\nc\n",
}


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    fake_hub.add_repo(REPO)
    fake_hub.commit(REPO, FILES, message="v1")
    fake_hub.tag(REPO, "v1", "main")
    return fake_hub


def main_sha(hub: FakeHub) -> str:
    _, commit = hub.lookup("model", REPO, "main")
    assert commit is not None
    return commit.sha


@pytest.fixture
def vv(vvstore_cmd: list[str], vv_project: Path, vv_home: Path, hub: FakeHub):
    """`vvstore -C project ...` in a subprocess; the fake_hub fixture's HF_* env is inherited."""

    def run(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "VVSTORE_HOME": str(store or vv_home), "HF_ENDPOINT": hub.endpoint}
        env.pop("VVSTORE_FAILPOINTS", None)
        return subprocess.run(
            [*vvstore_cmd, "-C", str(vv_project), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def manifest_models(project: Path) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in yaml.safe_load((project / "vvstore.yaml").read_text())["models"]}


# --- revisions --------------------------------------------------------------------------------


def test_branch_resolves_to_its_commit(hub: FakeHub) -> None:
    sha = main_sha(hub)
    info = FsspecSource("hf://org/repo@main/config.json", "hf").info()
    assert info.resolved == f"hf://org/repo@{sha}/config.json"
    assert SHA.search(info.resolved)
    assert info.size == len(FILES["config.json"])


def test_tag_and_commit_resolution(hub: FakeHub) -> None:
    sha = main_sha(hub)
    assert (
        open_source("hf://org/repo@v1/config.json").info().resolved
        == f"hf://org/repo@{sha}/config.json"
    )
    pinned = open_source(f"hf://org/repo@{sha}/config.json").info()
    assert pinned.resolved == f"hf://org/repo@{sha}/config.json"


def test_moving_a_branch_changes_what_it_resolves_to(hub: FakeHub) -> None:
    old = main_sha(hub)
    new = hub.commit(REPO, {**FILES, "config.json": b'{"model_type": "v2"}'}, message="v2")
    assert new != old
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()
    assert (
        open_source("hf://org/repo@main/config.json").info().resolved
        == f"hf://org/repo@{new}/config.json"
    )
    assert (
        open_source("hf://org/repo@v1/config.json").info().resolved
        == f"hf://org/repo@{old}/config.json"
    )


def test_lfs_file_offers_its_sha256(hub: FakeHub) -> None:
    info = open_source("hf://org/repo@main/model.safetensors").info()
    assert info.sha256 == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert open_source("hf://org/repo@main/config.json").info().sha256 is None  # not LFS


# --- single files -----------------------------------------------------------------------------


def test_api_download_cross_checks_sha256_and_records_the_commit(
    hub: FakeHub, tmp_path: Path
) -> None:
    data = FILES["model.safetensors"]
    store = BlobStore(tmp_path / "store")
    res = ModelDownloader(store, retry=RetryPolicy(base=0.01)).download(
        FetchRequest("m@1", ["hf://org/repo@main/model.safetensors"])
    )
    assert res.digest == hash_bytes(data)
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert res.source == f"hf://org/repo@{main_sha(hub)}/model.safetensors"
    assert store.path(res.digest).read_bytes() == data


def test_cli_add_file_at_branch_then_fetch_into_a_fresh_store(
    vv, vv_project: Path, vv_home: Path, tmp_path: Path
) -> None:
    data = FILES["model.safetensors"]
    r = vv("add", "hf://org/repo@main/model.safetensors", "--name", "org/tiny")
    assert r.returncode == 0, r.stderr
    entry = manifest_models(vv_project)["org/tiny"]
    assert entry["digest"] == str(hash_bytes(data)) and entry["size"] == len(data)
    assert has_blob(vv_home, data)
    fresh = tmp_path / "fresh"
    r = vv("--json", "fetch", store=fresh)
    assert r.returncode == 0, r.stderr
    [f] = json.loads(r.stdout)["fetched"]
    assert f["digest"] == entry["digest"]
    assert has_blob(fresh, data)


def test_cli_add_at_branch_records_the_commit(vv, vv_project: Path, hub: FakeHub) -> None:
    r = vv("add", "hf://org/repo@main/model.safetensors", "--name", "org/tiny")
    assert r.returncode == 0, r.stderr
    [source] = manifest_models(vv_project)["org/tiny"]["sources"]
    assert source == f"hf://org/repo@{main_sha(hub)}/model.safetensors"


def test_fetch_after_the_branch_moved_still_gets_the_added_bytes(
    vv, vv_project: Path, hub: FakeHub, tmp_path: Path
) -> None:
    """What `add` pinned is what a fresh machine fetches, even after `main` moved on."""
    r = vv("add", "hf://org/repo@main/model.safetensors", "--name", "org/tiny")
    assert r.returncode == 0, r.stderr
    hub.commit(REPO, {**FILES, "model.safetensors": payload(64 * KiB, 99)}, message="retrained")
    fresh = tmp_path / "fresh"
    r = vv("--json", "fetch", store=fresh)
    assert r.returncode == 0, r.stderr
    assert has_blob(fresh, FILES["model.safetensors"])


# --- whole snapshots --------------------------------------------------------------------------


def test_cli_add_snapshot_at_tag_as_a_tree(
    vv, vv_project: Path, vv_home: Path, tmp_path: Path
) -> None:
    r = vv("add", "hf://org/repo@v1", "--name", "org/snap")
    assert r.returncode == 0, r.stderr
    entry = manifest_models(vv_project)["org/snap"]
    assert entry["kind"] == "tree"
    show = vv("--json", "show", "org/snap")
    assert show.returncode == 0, show.stderr
    doc = json.loads(show.stdout)
    assert {f["path"]: (f["digest"], f["size"]) for f in doc["files"]} == {
        p: (str(hash_bytes(b)), len(b)) for p, b in FILES.items()
    }
    text = vv("show", "org/snap")
    for p in FILES:
        assert p in text.stdout

    fresh = tmp_path / "fresh"
    r = vv("--json", "fetch", store=fresh)
    assert r.returncode == 0, r.stderr
    for b in FILES.values():
        assert has_blob(fresh, b)
    again = vv("--json", "show", "org/snap", store=fresh)
    assert json.loads(again.stdout)["digest"] == entry["digest"]  # the same tree digest
    assert_blobs_sound(fresh)


def test_snapshot_at_a_moved_branch_reproduces_the_tree(
    vv, vv_project: Path, hub: FakeHub, tmp_path: Path
) -> None:
    r = vv("add", "hf://org/repo@main", "--name", "org/snap")
    assert r.returncode == 0, r.stderr
    digest = manifest_models(vv_project)["org/snap"]["digest"]
    hub.commit(REPO, {"config.json": b"{}"}, message="emptied")
    fresh = tmp_path / "fresh"
    r = vv("--json", "fetch", store=fresh)
    assert r.returncode == 0, r.stderr
    assert json.loads(vv("--json", "show", "org/snap", store=fresh).stdout)["digest"] == digest


# --- integrity --------------------------------------------------------------------------------


def _advertise_wrong_sha256(hub: FakeHub, path: str) -> None:
    """Make the hub advertise an LFS sha256 that the bytes it serves do not have."""
    _, commit = hub.lookup("model", REPO, "main")
    assert commit is not None
    blob = commit.files[path]
    commit.files[path] = dataclasses.replace(blob, sha256="0" * 64)


def test_lfs_sha256_mismatch_exit_5(vv, vv_project: Path, vv_home: Path, hub: FakeHub) -> None:
    _advertise_wrong_sha256(hub, "model.safetensors")
    sha = main_sha(hub)
    (vv_project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "m",
                        "version": "1",
                        "sources": [f"hf://org/repo@{sha}/model.safetensors"],
                    }
                ]
            }
        )
    )
    r = vv("fetch")
    assert r.returncode == 5, r.stderr
    assert "sha256" in r.stderr
    assert blob_files(vv_home) == []
    reasons = list((vv_home / "quarantine").glob("*.reason"))
    assert len(reasons) == 1 and "sha256" in reasons[0].read_text()
    assert not list((vv_home / "tmp").glob("*.part"))


def test_lfs_sha256_mismatch_api(hub: FakeHub, tmp_path: Path) -> None:
    _advertise_wrong_sha256(hub, "model.safetensors")
    data = FILES["model.safetensors"]
    store = BlobStore(tmp_path / "store")
    with pytest.raises(IntegrityError) as e:
        ModelDownloader(store, retry=RetryPolicy(base=0.01)).download(
            FetchRequest(
                "m@1", ["hf://org/repo@main/model.safetensors"], hash_bytes(data), len(data)
            )
        )
    assert e.value.exit_code == 5
    assert not store.has(hash_bytes(data))


def test_missing_file_exit_6(vv, vv_project: Path) -> None:
    (vv_project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "m",
                        "version": "1",
                        "sources": ["hf://org/repo@main/no-such-file.bin"],
                    }
                ]
            }
        )
    )
    r = vv("fetch")
    assert r.returncode == 6, r.stderr
    assert "no-such-file.bin" in r.stderr


def test_transient_hub_error_is_retried(hub: FakeHub, tmp_path: Path) -> None:
    data = FILES["model.safetensors"]
    hub.fail_next("/resolve/", 503)
    store = BlobStore(tmp_path / "store")
    res = ModelDownloader(store, retry=RetryPolicy(base=0.01)).download(
        FetchRequest("m@1", ["hf://org/repo@main/model.safetensors"], hash_bytes(data), len(data))
    )
    assert store.path(res.digest).read_bytes() == data


def test_missing_repo_is_a_source_failure(hub: FakeHub, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    with pytest.raises(AllSourcesFailedError) as e:
        ModelDownloader(store, retry=RetryPolicy(base=0.01)).download(
            FetchRequest("m@1", ["hf://org/nope@main/model.safetensors"])
        )
    assert "hf://org/nope@main/model.safetensors" in str(e.value)
