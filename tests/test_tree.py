"""Trees: canonical, sorted documents, so identical directories give identical digests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest

from cas.digest import hash_bytes
from cas.errors import IntegrityError, UsageError
from cas.manager import DefaultModelManager
from cas.tree import Tree, TreeEntry


def entry(path: str, data: bytes) -> TreeEntry:
    return TreeEntry(path, str(hash_bytes(data)), len(data))


FILES = {
    "config.json": b"{}",
    "model.onnx": b"\x00" * 100,
    "sub/a.txt": b"a",
    "sub/deeper/b.txt": b"bb",
}


def test_entries_are_sorted_and_encoding_is_canonical() -> None:
    entries = [entry(p, d) for p, d in FILES.items()]
    t1 = Tree.from_entries(entries)
    t2 = Tree.from_entries(reversed(entries))
    assert t1 == t2
    assert t1.encode() == t2.encode()
    assert [e.path for e in t1.files] == sorted(FILES)
    doc = json.loads(t1.encode())
    assert list(doc) == ["type", "version", "files"]
    assert doc["type"] == "vvstore-tree" and doc["version"] == 1
    assert [f["path"] for f in doc["files"]] == sorted(FILES)
    assert list(doc["files"][0]) == ["path", "digest", "size"]
    assert b" " not in t1.encode() and b"\n" not in t1.encode()  # compact


def test_round_trip_and_lookups() -> None:
    t = Tree.from_entries([entry(p, d) for p, d in FILES.items()])
    assert Tree.decode(t.encode()) == t
    assert t.size == sum(len(d) for d in FILES.values())
    assert t.get("sub/a.txt") == entry("sub/a.txt", b"a")
    assert t.get("missing") is None


def test_duplicate_paths_refused() -> None:
    with pytest.raises(UsageError) as info:
        Tree.from_entries([entry("a", b"1"), entry("b", b"2"), entry("a", b"3")])
    assert "'a'" in str(info.value)


@pytest.mark.parametrize("bad", ["../x", "/abs", "a//b", "a\\b", "a/./b", "x\x00"])
def test_bad_paths_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        Tree.from_entries([entry(bad, b"1")])


def _doc(files: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"type": "vvstore-tree", "version": 1, "files": files, **extra}).encode()


GOOD = {"path": "a", "digest": str(hash_bytes(b"a")), "size": 1}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        _doc([{**GOOD, "path": "../etc/passwd"}]),
        _doc([{**GOOD, "path": "/etc/passwd"}]),
        _doc([{**GOOD, "digest": "sha256:" + "0" * 64}]),
        _doc([{**GOOD, "digest": "blake3:" + "A" * 64}]),
        _doc([{**GOOD, "size": -1}]),
        _doc([{**GOOD, "size": "1"}]),
        _doc([GOOD, GOOD]),
        _doc([{**GOOD, "extra": 1}]),
        _doc([GOOD], extra=1),
        json.dumps({"type": "other", "version": 1, "files": [GOOD]}).encode(),
        json.dumps({"type": "vvstore-tree", "version": 2, "files": [GOOD]}).encode(),
        json.dumps({"type": "vvstore-tree", "version": 1}).encode(),
    ],
)
def test_decode_of_a_bad_document_is_an_integrity_error(data: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        Tree.decode(data, what="tree blake3:abc")
    assert info.value.exit_code == 5
    assert "tree blake3:abc" in str(info.value)


def test_decode_accepts_unsorted_document_and_sorts_it() -> None:
    b = {"path": "b", "digest": str(hash_bytes(b"b")), "size": 1}
    t = Tree.decode(_doc([b, GOOD]))
    assert [e.path for e in t.files] == ["a", "b"]


def _make_dir(root: Path, order: list[str]) -> None:
    for rel in order:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(FILES[rel])


def test_identical_directories_give_identical_tree_digests(tmp_path: Path, vv_home: Path) -> None:
    one, two = tmp_path / "one" / "m", tmp_path / "two" / "m"
    _make_dir(one, list(FILES))
    _make_dir(two, list(reversed(FILES)))
    os.utime(two / "config.json", (1_000_000_000, 1_000_000_000))  # metadata is not content
    mgr1 = DefaultModelManager(tmp_path / "p1", vv_home)
    mgr1.init()
    mgr2 = DefaultModelManager(tmp_path / "p2", vv_home)
    mgr2.init()
    d1 = mgr1.add([str(one)])[0].entry.digest
    d2 = mgr2.add([str(two)])[0].entry.digest
    assert d1 == d2
    expected_doc = Tree.from_entries([entry(p, d) for p, d in FILES.items()]).encode()
    assert d1 == "blake3:" + blake3.blake3(expected_doc).hexdigest()


def test_different_content_gives_different_tree(tmp_path: Path) -> None:
    a = Tree.from_entries([entry("a", b"1")])
    b = Tree.from_entries([entry("a", b"2")])
    c = Tree.from_entries([entry("b", b"1")])
    assert len({a.encode(), b.encode(), c.encode()}) == 3
