"""vvstore.lock: canonical TOML, strict validation naming the field, drift from the manifest."""

from __future__ import annotations

import os
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas.digest import hash_bytes
from cas.drift import Drift, diff, format_drift, require_in_sync
from cas.errors import DriftError, InvalidNameError, LockfileError, ManifestError, NotFoundError
from cas.lockfile import (
    CREATED_BY,
    Hashes,
    LockedFile,
    LockedModel,
    Lockfile,
    field_error,
)
from cas.manifest import Manifest, ModelEntry
from cas.names import validate_relpath
from cas.redact import has_credentials
from cas.tree import Tree, TreeEntry

SHA = "5" * 64


def lfile(path: str, data: bytes, sources: list[str] | None = None, sha: str | None = None):
    return LockedFile(path, len(data), Hashes(hash_bytes(data).hex, sha), sources or [])


def onnx(version: str = "1.2.0", **kw) -> LockedModel:
    f = lfile("model.onnx", b"onnx bytes", ["hf://timm/resnet50@" + "c" * 40 + "/model.onnx"], SHA)
    return LockedModel.build(
        "resnet50", version, "file", [f], format="onnx",
        sources=kw.get("sources", ["hf://timm/resnet50@main/model.onnx"]),
    )  # fmt: skip


def tiny() -> LockedModel:
    files = [lfile("tokenizer/vocab.txt", b"vocab"), lfile("config.json", b"{}")]
    return LockedModel.build("acme/tiny", "1", "tree", files, format="hf")


def sample() -> Lockfile:
    lock = Lockfile()
    lock.upsert(onnx())
    lock.upsert(tiny())
    return lock


# --- the document --------------------------------------------------------------------------


def test_dumps_is_pylock_shaped_and_sorted() -> None:
    text = sample().dumps().decode()
    assert text.startswith(f'lock-version = "1"\ncreated-by = "{CREATED_BY}"\n\n[[models]]\n')
    assert text.index('name = "acme/tiny"') < text.index('name = "resnet50"')
    assert text.index('path = "config.json"') < text.index('path = "tokenizer/vocab.txt"')
    assert f'hashes = {{ blake3 = "{hash_bytes(b"{}").hex}" }}' in text
    assert f'sha256 = "{SHA}" }}' in text
    assert "[[models.files]]" in text and "null" not in text and "None" not in text
    assert (
        "format" not in Lockfile(models=[LockedModel.build("x", "1", "tree", [])]).dumps().decode()
    )
    doc = msgspec.toml.decode(text)
    assert doc["lock-version"] == "1" and doc["created-by"] == CREATED_BY
    assert doc["models"][1]["files"][0]["hashes"] == {
        "blake3": hash_bytes(b"onnx bytes").hex,
        "sha256": SHA,
    }
    assert doc["models"][1]["digest"] == str(hash_bytes(b"onnx bytes"))


def test_round_trip_and_byte_identical() -> None:
    lock = sample()
    data = lock.dumps()
    again = Lockfile.loads(data)
    assert again == lock.normalized()
    assert again.dumps() == data == lock.dumps()


def test_insertion_order_does_not_matter() -> None:
    a, b = Lockfile(), Lockfile()
    for m in (onnx("2.0"), tiny(), onnx("1.10"), onnx("1.9")):
        a.upsert(m)
    for m in (onnx("1.9"), onnx("1.10"), tiny(), onnx("2.0")):
        b.upsert(m)
    assert a.dumps() == b.dumps()
    assert [m.version for m in Lockfile.loads(a.dumps()).models] == ["1", "1.9", "1.10", "2.0"]


def test_empty_lockfile_round_trips() -> None:
    data = Lockfile().dumps()
    assert data == f'lock-version = "1"\ncreated-by = "{CREATED_BY}"\nmodels = []\n'.encode()
    assert Lockfile.loads(data) == Lockfile()


def test_tree_digest_is_the_tree_blob_digest() -> None:
    """`fetch --locked` can rebuild a tree blob from the lockfile alone."""
    model = tiny()
    entries = [TreeEntry(f.path, f.digest, f.size) for f in model.files]
    assert model.digest == str(hash_bytes(Tree.from_entries(entries).encode()))
    assert model.tree().encode() == Tree.from_entries(entries).encode()
    assert model.size == 5 + 2


def test_build_refuses_a_file_model_without_exactly_one_file() -> None:
    with pytest.raises(ValueError):
        LockedModel.build("x", "1", "file", [])


# --- save and load -------------------------------------------------------------------------


def test_save_is_atomic_and_leaves_unchanged_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "vvstore.lock"
    lock = sample()
    assert lock.save(path) is True
    assert Lockfile.load(path) == lock.normalized()
    os.utime(path, (1_000_000_000, 1_000_000_000))
    inode = path.stat().st_ino
    assert Lockfile.load(path).save(path) is False
    assert path.stat().st_mtime == 1_000_000_000 and path.stat().st_ino == inode
    lock.remove("acme/tiny")
    assert lock.save(path) is True
    assert [m.name for m in Lockfile.load(path).models] == ["resnet50"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vvstore.lock"]  # no temp debris


def test_load_missing(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as e:
        Lockfile.load(tmp_path / "vvstore.lock")
    assert e.value.exit_code == 4
    assert Lockfile.load_or_empty(tmp_path / "vvstore.lock") == Lockfile()


def test_unreadable_lockfile_is_invalid(tmp_path: Path) -> None:
    """gc fails closed (exit 3) on a root whose lockfile cannot be read."""
    with pytest.raises(LockfileError) as e:
        Lockfile.load(tmp_path)  # a directory: read fails with an OSError that is not ENOENT
    assert e.value.exit_code == 3 and "cannot read" in str(e.value)


# --- query and update ----------------------------------------------------------------------


def test_get_upsert_remove() -> None:
    lock = sample()
    lock.upsert(onnx("1.10"))
    assert lock.get("resnet50").version == "1.10"  # highest by PEP 440, not as strings
    assert lock.get("resnet50", "1.2.0") == onnx()
    assert lock.get("resnet50", "9") is None and lock.get("nope") is None
    replaced = lock.upsert(onnx(sources=["s3://b/resnet50.onnx"]))
    assert replaced == onnx()
    assert lock.get("resnet50", "1.2.0").sources == ["s3://b/resnet50.onnx"]
    assert lock.remove("resnet50") == [onnx(sources=["s3://b/resnet50.onnx"]), onnx("1.10")]
    assert lock.remove("resnet50") == []
    assert [m.ref for m in lock.models] == ["acme/tiny@1"]


def test_upsert_stamps_created_by_only_on_change() -> None:
    lock = Lockfile(created_by="vvstore 0.0.1")
    lock.upsert(onnx())
    assert lock.created_by == CREATED_BY
    lock.created_by = "vvstore 0.0.1"
    lock.upsert(onnx())  # the same model again: nothing changed
    assert lock.created_by == "vvstore 0.0.1"


def test_upsert_validates() -> None:
    lock = Lockfile()
    with pytest.raises(LockfileError) as e:
        lock.upsert(onnx(sources=["https://u:secret@h/m.onnx"]))
    assert e.value.field == "$.models[0].sources[0]"
    assert "secret" not in str(e.value)
    bad = onnx()
    bad.files[0].path = "../../etc/passwd"
    with pytest.raises(LockfileError, match="files\\[0\\].path"):
        lock.upsert(bad)
    assert lock.models == []


def test_referenced_digests() -> None:
    lock = sample()
    want = {str(hash_bytes(b"onnx bytes")), tiny().digest}
    want |= {str(hash_bytes(b"vocab")), str(hash_bytes(b"{}"))}
    assert lock.referenced_digests() == want


# --- refusing bad lockfiles ----------------------------------------------------------------

GOOD = sample().dumps().decode()
F0 = "$.models[0].files[0]"  # acme/tiny, config.json
M1 = "$.models[1]"  # resnet50


def _bad(old: str, new: str, count: int = 1) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, count)


BAD = [
    ("models = [", None, "not valid TOML"),
    (_bad("[[models]]\nname", "[[models]\nname"), None, "not valid TOML"),
    (_bad('lock-version = "1"\n', ""), "$.lock-version", "missing"),
    (_bad('lock-version = "1"', 'lock-version = "2"'), "$.lock-version", "unsupported"),
    (_bad('lock-version = "1"', "lock-version = 1"), "$.lock-version", "Expected `str`"),
    (_bad('created-by = "', 'colour = "red"\ncreated-by = "'), "$", "unknown field `colour`"),
    (_bad('kind = "tree"', 'kind = "tree"\nlicense = "MIT"'), "$.models[0]", "unknown field"),
    (_bad("size = 2\n", "size = -2\n"), f"{F0}.size", "Expected `int` >= 0"),
    (_bad('kind = "tree"', 'kind = "dir"'), "$.models[0].kind", "Invalid enum value 'dir'"),
    (_bad('digest = "blake3:', 'digest = "sha256:'), "$.models[0].digest", "matching"),
    (_bad('blake3 = "', 'blake3 = "ABC'), f"{F0}.hashes.blake3", "Expected `str` matching"),
    (_bad("hashes = { blake3", "hashes = { md5 = 'x', blake3"), f"{F0}.hashes", "field `md5`"),
    (_bad('path = "config.json"', 'path = "../../etc/passwd"'), f"{F0}.path", "'..'"),
    (_bad('path = "config.json"', 'path = "/etc/passwd"'), f"{F0}.path", "is absolute"),
    (_bad('path = "config.json"', 'path = "C:/x"'), f"{F0}.path", "drive letter"),
    (_bad('path = "config.json"', 'path = "a\\\\b"'), f"{F0}.path", "backslash"),
    (_bad('path = "config.json"', 'path = "tokenizer/vocab.txt"'), "$.models[0].files[1].path",
     "listed twice"),
    (_bad('name = "acme/tiny"', 'name = "../x"'), "$.models[0].name", "'..'"),
    (_bad('\nversion = "1"', '\nversion = "1/2"'), "$.models[0].version", "invalid version"),
    (_bad('name = "resnet50"\nversion = "1.2.0"', 'name = "acme/tiny"\nversion = "1"'),
     "$.models[1]", "locked twice"),
    (_bad("size = 7\n", "size = 8\n"), "$.models[0].size", "not the sum"),
    (_bad('"hf://timm', '"https://u:p4ss@h/x", "hf://timm'), f"{M1}.sources[0]", "credential"),
    (_bad('"hf://timm/resnet50@ccc', '"https://h/m?X-Amz-Signature=abc", "hf://timm/resnet50@ccc'),
     f"{M1}.files[0].sources[0]", "credential"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "field", "problem"), BAD)
def test_bad_lockfile_names_file_and_field(text: str, field: str | None, problem: str) -> None:
    with pytest.raises(LockfileError) as e:
        Lockfile.loads(text.encode(), "proj/vvstore.lock")
    err = e.value
    assert err.exit_code == 3 and err.file == "proj/vvstore.lock"
    assert err.field == field
    assert problem in err.problem
    assert str(err).startswith("proj/vvstore.lock: ")
    assert "p4ss" not in str(err) and "X-Amz-Signature=abc" not in str(err)


def test_credential_error_says_what_to_do() -> None:
    text = _bad('"hf://timm', '"https://u:p4ss@h/x", "hf://timm')
    with pytest.raises(LockfileError) as e:
        Lockfile.loads(text.encode())
    assert "remove the credential" in str(e.value)
    assert "https://***@h/x" in str(e.value)


def test_model_digest_must_match_its_file_or_tree() -> None:
    other = hash_bytes(b"other").hex
    text = GOOD.replace(
        f'digest = "blake3:{hash_bytes(b"onnx bytes").hex}"', f'digest = "blake3:{other}"'
    )
    with pytest.raises(LockfileError) as e:
        Lockfile.loads(text.encode())
    assert e.value.field == "$.models[1].digest" and "hashes.blake3" in e.value.problem
    text = GOOD.replace(f'blake3 = "{hash_bytes(b"vocab").hex}"', f'blake3 = "{other}"')
    with pytest.raises(LockfileError) as e:
        Lockfile.loads(text.encode())
    assert e.value.field == "$.models[0].digest" and "tree of its files" in e.value.problem


def test_file_model_needs_exactly_one_file() -> None:
    text = GOOD.replace('kind = "tree"', 'kind = "file"')
    with pytest.raises(LockfileError) as e:
        Lockfile.loads(text.encode())
    assert e.value.field == "$.models[0].files"


def test_unsorted_hand_edit_is_accepted_and_rewritten_sorted() -> None:
    doc = msgspec.toml.decode(GOOD)
    doc["models"].reverse()
    doc["models"][1]["files"].reverse()
    import tomli_w

    assert Lockfile.loads(tomli_w.dumps(doc).encode()).dumps().decode() == GOOD


def test_field_error_helper_serves_the_manifest_too() -> None:
    class S(msgspec.Struct):
        size: int

    try:
        msgspec.convert({"size": "x"}, S)
    except msgspec.ValidationError as e:
        err = field_error("vvstore.yaml", e, ManifestError)
    assert type(err) is ManifestError
    assert (err.file, err.field, err.problem) == (
        "vvstore.yaml",
        "$.size",
        "Expected `int`, got `str`",
    )


# --- property: any valid lockfile ----------------------------------------------------------


def _valid_path(p: str) -> bool:
    try:
        validate_relpath(p)
    except InvalidNameError:
        return False
    return True


SEGMENT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
                  min_size=1, max_size=8)  # fmt: skip
PATHS = st.lists(SEGMENT, min_size=1, max_size=3).map("/".join).filter(_valid_path)
HEX = st.binary(min_size=32, max_size=32).map(bytes.hex)
SOURCE = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: not has_credentials(s)
)
FILES = st.builds(
    LockedFile, PATHS, st.integers(0, 2**63 - 1), st.builds(Hashes, HEX, st.none() | HEX),
    st.lists(SOURCE, max_size=3),
)  # fmt: skip
NAME = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}(/[A-Za-z0-9][a-z0-9._-]{0,8})?", fullmatch=True)
VERSION = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,8}", fullmatch=True)


@st.composite
def models(draw: st.DrawFn) -> LockedModel:
    kind = draw(st.sampled_from(["file", "tree"]))
    size = (1, 1) if kind == "file" else (0, 5)
    files = draw(st.lists(FILES, min_size=size[0], max_size=size[1], unique_by=lambda f: f.path))
    if kind == "tree" and sum(f.size for f in files) > 2**63 - 1:
        files = [msgspec.structs.replace(f, size=1) for f in files]
    return LockedModel.build(
        draw(NAME), draw(VERSION), kind, draw(st.permutations(files)),
        format=draw(st.none() | st.text(max_size=10)), sources=draw(st.lists(SOURCE, max_size=2)),
    )  # fmt: skip


LOCKS = st.builds(
    Lockfile,
    created_by=st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    models=st.lists(models(), max_size=4, unique_by=lambda m: (m.name, m.version)),
)


@settings(deadline=None)
@given(LOCKS, st.randoms())
def test_any_valid_lockfile_round_trips_byte_identical(lock: Lockfile, rnd: random.Random) -> None:
    data = lock.dumps()
    assert data == lock.dumps()
    back = Lockfile.loads(data)
    assert back == lock.normalized()
    assert back.dumps() == data
    assert msgspec.toml.decode(data.decode()) == msgspec.to_builtins(lock.normalized())
    shuffled = msgspec.structs.replace(lock, models=rnd.sample(lock.models, len(lock.models)))
    for m in shuffled.models:
        rnd.shuffle(m.files)
    assert shuffled.dumps() == data
    keys = [(m.name, m.version) for m in back.models]
    assert len(keys) == len(set(keys))
    for m in back.models:
        assert [f.path for f in m.files] == sorted(f.path for f in m.files)


# --- drift ---------------------------------------------------------------------------------


def entry(model: LockedModel, **changes: object) -> ModelEntry:
    """The manifest entry that `model` was locked from, with `changes`."""
    e = ModelEntry(
        name=model.name, version=model.version, kind=model.kind, format=model.format,
        sources=list(model.sources), digest=model.digest, size=model.size,
        file=model.files[0].path if model.kind == "file" else None,
    )  # fmt: skip
    for k, v in changes.items():
        setattr(e, k, v)
    return e


def manifest(*entries: ModelEntry) -> Manifest:
    return Manifest(models=list(entries))


def test_in_sync_is_empty() -> None:
    lock = sample()
    assert diff(manifest(entry(onnx()), entry(tiny())), lock) == []
    assert diff(manifest(), Lockfile()) == []
    assert format_drift([]) == ""
    require_in_sync(manifest(entry(onnx()), entry(tiny())), lock)


def test_manifest_that_states_less_is_in_sync() -> None:
    """A manifest without digest, format or file name does not drift from a lock that has them."""
    lean = entry(onnx(), digest=None, format=None, file=None, size=None)
    assert diff(manifest(lean, entry(tiny())), sample()) == []


def test_credentials_in_manifest_sources_are_compared_stripped() -> None:
    e = entry(onnx(), sources=["hf://timm/resnet50@main/model.onnx?token=t0k"])
    assert diff(manifest(e, entry(tiny())), sample()) == []


def test_added_and_removed() -> None:
    lock = Lockfile(models=[onnx()])
    drifts = diff(manifest(entry(tiny())), lock)
    assert drifts == [Drift("added", "acme/tiny", "1"), Drift("removed", "resnet50", "1.2.0")]
    assert format_drift(drifts) == (
        "+ acme/tiny@1 (in manifest, not locked)\n- resnet50@1.2.0 (locked, not in manifest)"
    )


def test_changed_version() -> None:
    drifts = diff(manifest(entry(onnx("1.3.0")), entry(tiny())), sample())
    assert drifts == [Drift("version", "resnet50", "1.3.0", manifest="1.3.0", locked="1.2.0")]
    assert str(drifts[0]) == "~ resnet50: version 1.2.0 (locked) -> 1.3.0 (manifest)"


def test_changed_versions_that_do_not_pair_are_added_and_removed() -> None:
    lock = Lockfile(models=[onnx("1.0"), onnx("1.1")])
    drifts = diff(manifest(entry(onnx("2.0"))), lock)
    assert [(d.kind, d.version) for d in drifts] == [
        ("removed", "1.0"), ("removed", "1.1"), ("added", "2.0"),
    ]  # fmt: skip


def test_changed_source() -> None:
    e = entry(onnx(), sources=["s3://models/resnet50.onnx"])
    drifts = diff(manifest(e, entry(tiny())), sample())
    assert drifts == [
        Drift("source", "resnet50", "1.2.0", "[s3://models/resnet50.onnx]",
              "[hf://timm/resnet50@main/model.onnx]"),
    ]  # fmt: skip
    assert str(drifts[0]).startswith(
        "~ resnet50@1.2.0: source [hf://timm/resnet50@main/model.onnx]"
    )


def test_changed_digest_kind_format_file() -> None:
    other = str(hash_bytes(b"other"))
    e = entry(onnx(), digest=other, format="pytorch", file="model.pt")
    kinds = [d.kind for d in diff(manifest(e, entry(tiny(), kind="file")), sample())]
    assert kinds == ["kind", "file", "format", "digest"]
    d = diff(manifest(e, entry(tiny())), sample())[-1]
    assert (d.kind, d.manifest, d.locked) == ("digest", other, onnx().digest)


def test_require_in_sync_raises_drift_error() -> None:
    with pytest.raises(DriftError) as e:
        require_in_sync(manifest(entry(onnx("1.3.0"))), sample(), "p/vvstore.lock")
    assert e.value.exit_code == 3
    assert "~ resnet50: version 1.2.0 (locked) -> 1.3.0 (manifest)" in str(e.value)
    assert "- acme/tiny@1 (locked, not in manifest)" in str(e.value)
    assert "vvstore lock" in str(e.value)
