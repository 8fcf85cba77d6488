"""Store layout: where the store is by default, and where each thing lives in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.digest import Digest, hash_bytes
from cas.layout import CACHEDIR_TAG, StoreLayout, default_store_root


def test_default_root_prefers_vvstore_home(tmp_path: Path) -> None:
    env = {"VVSTORE_HOME": str(tmp_path / "a"), "XDG_CACHE_HOME": str(tmp_path / "b")}
    assert default_store_root(env) == tmp_path / "a"


def test_default_root_then_xdg_cache_home(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "b")}
    assert default_store_root(env) == tmp_path / "b" / "vvstore"


def test_default_root_empty_vars_fall_through(tmp_path: Path) -> None:
    env = {"VVSTORE_HOME": "", "XDG_CACHE_HOME": str(tmp_path / "b")}
    assert default_store_root(env) == tmp_path / "b" / "vvstore"


def test_default_root_then_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_root({}) == tmp_path / "home" / ".cache" / "vvstore"


def test_default_root_reads_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VVSTORE_HOME", str(tmp_path / "env"))
    assert default_store_root() == tmp_path / "env"


def test_default_root_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_store_root({"VVSTORE_HOME": "~/s"}) == tmp_path / "s"


def test_blob_path_is_sharded_by_two_hex_chars() -> None:
    lay = StoreLayout("/s")
    d = Digest("ab" + "c" * 62)
    assert lay.blob_path(d) == Path("/s/blobs/blake3/ab") / ("c" * 62)
    e = hash_bytes(b"")
    assert lay.blob_path(e) == Path("/s/blobs/blake3") / e.hex[:2] / e.hex[2:]
    assert lay.blob_path(e).parent.parent == lay.blobs


def test_paths_of_a_store(tmp_path: Path) -> None:
    lay = StoreLayout(tmp_path)
    assert lay.version_file == tmp_path / "VERSION"
    assert lay.cachedir_tag == tmp_path / "CACHEDIR.TAG"
    assert lay.tmp == tmp_path / "tmp"
    assert lay.audit_log == tmp_path / "audit.log"
    assert set(lay.directories()) == {
        tmp_path / n
        for n in ("blobs/blake3", "tmp", "roots", "pins", "locks", "quarantine", "index")
    }
    d = hash_bytes(b"x")
    assert lay.digest_lock(d) == tmp_path / "locks" / f"{d.hex}.lock"


def test_relative_root_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert StoreLayout("rel").root == tmp_path / "rel"


def test_root_entry_is_stable_and_distinct(tmp_path: Path) -> None:
    lay = StoreLayout(tmp_path / "s")
    a = lay.root_entry(tmp_path / "p1" / "vvstore.lock")
    assert a == lay.root_entry(str(tmp_path / "p1" / "vvstore.lock"))
    assert a != lay.root_entry(tmp_path / "p2" / "vvstore.lock")
    assert a.parent == lay.roots


def test_cachedir_tag_signature() -> None:
    assert CACHEDIR_TAG.startswith("Signature: 8a477f597d28d172789f06886806bc55")
