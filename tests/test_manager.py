"""The facade: add files and trees, resolve refs, open and path, remove, init."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from cas.blobs import BlobStore
from cas.digest import Digest
from cas.errors import (
    BlobNotFoundError,
    IntegrityError,
    ModelNotFoundError,
    NotFoundError,
    ProjectNotFoundError,
    UsageError,
)
from cas.manager import DefaultModelManager
from cas.manifest import ModelManifest
from cas.tree import Tree


def hexof(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def blob_files(store: Path) -> set[Path]:
    return {p for p in (store / "blobs").rglob("*") if p.is_file()}


TREE = {
    "config.json": b'{"a": 1}',
    "model.safetensors": b"weights" * 100,
    "tokenizer/vocab.txt": b"a\nb\n",
    "tokenizer/deep/er/merges.txt": b"x y\n",
}


@pytest.fixture
def tree_dir(tmp_path: Path) -> Path:
    root = tmp_path / "outside" / "tiny"
    for rel, data in TREE.items():
        write(root / rel, data)
    return root


# --- init -----------------------------------------------------------------------------------


def test_init_creates_manifest_and_registers_root(tmp_path: Path, vv_home: Path) -> None:
    project = tmp_path / "proj"
    mgr = DefaultModelManager(project, vv_home)
    path, created = mgr.init()
    assert created and path == project / "vvstore.yaml"
    assert ModelManifest.load_manifest(path).list_all_models() == []
    roots = list((vv_home / "roots").iterdir())
    assert len(roots) == 1
    lockfile = (project / "vvstore.lock").absolute()
    assert roots[0].read_text().strip() == str(lockfile)
    assert Path(roots[0].read_text().strip()).is_absolute()
    again, created = DefaultModelManager(project, vv_home).init()
    assert again == path and not created
    assert len(list((vv_home / "roots").iterdir())) == 1


def test_init_keeps_an_existing_manifest(tmp_path: Path, vv_home: Path) -> None:
    project = tmp_path / "proj"
    write(project / "vvstore.yaml", b'models:\n  - name: a\n    version: "1"\n')
    _, created = DefaultModelManager(project, vv_home).init()
    assert not created
    assert b"name: a" in (project / "vvstore.yaml").read_bytes()


def test_missing_project(tmp_path: Path, vv_home: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectNotFoundError) as info:
        DefaultModelManager(tmp_path / "empty", vv_home).list_models()
    assert info.value.exit_code == 4


# --- add ------------------------------------------------------------------------------------


def test_add_file(vv_manager: DefaultModelManager, vv_home: Path, vv_project: Path) -> None:
    data = os.urandom(10_000)
    src = write(vv_project / "models" / "resnet50.onnx", data)
    [res] = vv_manager.add([str(src)])
    e = res.entry
    assert (e.name, e.version, e.kind, e.file, e.format) == (
        "resnet50",
        "1",
        "file",
        "resnet50.onnx",
        "onnx",
    )
    assert e.digest == "blake3:" + hexof(data) and e.size == len(data)
    assert res.files == 1 and res.new_blobs == 1 and res.replaced is None
    blob = vv_home / "blobs" / "blake3" / hexof(data)[:2] / hexof(data)[2:]
    assert blob.read_bytes() == data
    saved = ModelManifest.load_manifest(vv_project).get_model_info("resnet50", "1")
    assert saved.digest == e.digest and saved.file == "resnet50.onnx"
    assert any(
        x["action"] == "add" and x["ref"] == "resnet50@1" for x in vv_manager.store.audit.entries()
    )


def test_add_with_tags_format_version_and_name(
    vv_manager: DefaultModelManager, tmp_path: Path
) -> None:
    src = write(tmp_path / "w.bin", b"w")
    [res] = vv_manager.add(
        [str(src)], name="acme/w", version="2.0", tags=["b", "a", "b"], format="custom"
    )
    e = vv_manager.manifest.get_model_info("acme/w", "2.0")
    assert e == res.entry
    assert e.tags == ["a", "b"] and e.format == "custom"


def test_add_directory_as_tree(
    vv_manager: DefaultModelManager, tree_dir: Path, vv_home: Path
) -> None:
    [res] = vv_manager.add([str(tree_dir)])
    e = res.entry
    assert (e.name, e.kind, e.format, e.file) == ("tiny", "tree", "hf", None)
    assert res.files == len(TREE)
    assert e.size == sum(len(d) for d in TREE.values())
    tree = vv_manager.load_tree(Digest.parse(e.digest or ""))
    assert {f.path: f.digest for f in tree.files} == {
        p: "blake3:" + hexof(d) for p, d in TREE.items()
    }
    assert e.digest == "blake3:" + hexof(tree.encode())
    assert res.new_blobs == len(TREE) + 1  # the files and the tree document
    assert len(blob_files(vv_home)) == len(TREE) + 1


def test_re_adding_same_content_adds_no_blobs(
    vv_manager: DefaultModelManager, tree_dir: Path, vv_home: Path, tmp_path: Path
) -> None:
    vv_manager.add([str(tree_dir)])
    before = blob_files(vv_home)
    [res] = vv_manager.add([str(tree_dir)])
    assert res.new_blobs == 0 and res.replaced is not None
    assert res.replaced.digest == res.entry.digest
    src = write(tmp_path / "copy.bin", TREE["config.json"])  # same bytes as a tree file
    [res] = vv_manager.add([str(src)])
    assert res.new_blobs == 0
    assert blob_files(vv_home) == before
    assert len(vv_manager.list_models()) == 2


def test_re_adding_changed_content_replaces_the_entry(
    vv_manager: DefaultModelManager, tmp_path: Path
) -> None:
    src = write(tmp_path / "m.bin", b"v1")
    first = vv_manager.add([str(src)])[0].entry
    src.write_bytes(b"v2")
    [res] = vv_manager.add([str(src)])
    assert res.replaced is not None and res.replaced.digest == first.digest
    assert res.entry.digest == "blake3:" + hexof(b"v2")
    assert [m.digest for m in vv_manager.list_models()] == [res.entry.digest]


def test_add_several_paths(vv_manager: DefaultModelManager, tmp_path: Path, tree_dir: Path) -> None:
    a = write(tmp_path / "a.onnx", b"a")
    results = vv_manager.add([str(a), str(tree_dir)], version="3")
    assert [r.entry.ref for r in results] == ["a@3", "tiny@3"]


def test_source_inside_project_is_relative(
    vv_manager: DefaultModelManager, vv_project: Path
) -> None:
    src = write(vv_project / "models" / "x.onnx", b"x")
    [res] = vv_manager.add([str(src)])
    assert res.entry.sources == ["models/x.onnx"]


def test_source_inside_project_relative_to_cwd(
    vv_manager: DefaultModelManager, vv_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(vv_project / "models" / "y.onnx", b"y")
    monkeypatch.chdir(vv_project / "models")
    [res] = vv_manager.add(["y.onnx"])
    assert res.entry.sources == ["models/y.onnx"]


def test_source_outside_project_is_not_recorded(
    vv_manager: DefaultModelManager, tmp_path: Path
) -> None:
    src = write(tmp_path / "elsewhere" / "z.onnx", b"z")
    [res] = vv_manager.add([str(src)])
    assert res.entry.sources == []


def test_source_outside_project_via_dotdot_is_not_recorded(
    vv_manager: DefaultModelManager, vv_project: Path, tmp_path: Path
) -> None:
    """`project/../z.onnx` is outside the project: no source with a `..` is recorded."""
    write(tmp_path / "z.onnx", b"z")
    [res] = vv_manager.add([str(vv_project / ".." / "z.onnx")])
    assert res.entry.sources == []
    assert ".." not in (vv_project / "vvstore.yaml").read_text()


def test_add_nonexistent_path(vv_manager: DefaultModelManager, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        vv_manager.add([str(tmp_path / "nope.onnx")])
    assert "nope.onnx" in str(info.value) and info.value.exit_code == 4


def test_name_with_two_paths_is_a_usage_error(
    vv_manager: DefaultModelManager, tmp_path: Path
) -> None:
    a, b = write(tmp_path / "a", b"a"), write(tmp_path / "b", b"b")
    with pytest.raises(UsageError) as info:
        vv_manager.add([str(a), str(b)], name="x")
    assert info.value.exit_code == 2
    assert vv_manager.list_models() == []


@pytest.mark.parametrize(
    ("kwargs", "paths"),
    [
        ({}, []),
        ({"link": "symlink"}, ["f"]),
        ({"version": "../1"}, ["f"]),
        ({"name": "a b"}, ["f"]),
        ({}, ["s3://bucket/key"]),
    ],
)
def test_add_usage_errors(
    vv_manager: DefaultModelManager, tmp_path: Path, kwargs: dict, paths: list[str]
) -> None:
    write(tmp_path / "f", b"f")
    with pytest.raises(UsageError):
        vv_manager.add([str(tmp_path / p) if p == "f" else p for p in paths], **kwargs)
    assert vv_manager.list_models() == []


def test_unusable_default_name_asks_for_name(
    vv_manager: DefaultModelManager, tmp_path: Path
) -> None:
    src = write(tmp_path / "my model.onnx", b"m")
    with pytest.raises(UsageError) as info:
        vv_manager.add([str(src)])
    assert "--name" in str(info.value)
    assert vv_manager.add([str(src)], name="my-model")[0].entry.name == "my-model"


# --- resolve, open, path --------------------------------------------------------------------


@pytest.fixture
def populated(
    vv_manager: DefaultModelManager, tmp_path: Path, tree_dir: Path
) -> DefaultModelManager:
    vv_manager.add(
        [str(write(tmp_path / "v1" / "net.onnx", b"version one"))], name="net", version="1.0"
    )
    vv_manager.add(
        [str(write(tmp_path / "v2" / "net.onnx", b"version two"))], name="net", version="1.10"
    )
    vv_manager.add([str(tree_dir)], name="acme/tiny", version="1")
    return vv_manager


def read(mgr: DefaultModelManager, ref: str) -> bytes:
    with mgr.open(ref) as f:
        return f.read()


def test_resolve_name_gives_highest_version(populated: DefaultModelManager) -> None:
    r = populated.resolve("net")
    assert r.entry is not None and r.entry.version == "1.10"
    assert r.digest.hex == hexof(b"version two") and r.size == len(b"version two")
    assert read(populated, "net") == b"version two"


def test_resolve_name_at_version(populated: DefaultModelManager) -> None:
    assert read(populated, "net@1.0") == b"version one"
    assert populated.path("net@1.0").read_bytes() == b"version one"


def test_single_file_model_with_its_file_name(populated: DefaultModelManager) -> None:
    r = populated.resolve("net@1.0/net.onnx")
    assert r.path == "net.onnx" and r.digest.hex == hexof(b"version one")
    assert read(populated, "net@1.0/net.onnx") == b"version one"
    assert read(populated, "net/net.onnx") == b"version two"
    with pytest.raises(NotFoundError):
        populated.resolve("net@1.0/other.onnx")


def test_tree_files(populated: DefaultModelManager) -> None:
    for rel, data in TREE.items():
        assert read(populated, f"acme/tiny/{rel}") == data
        assert read(populated, f"acme/tiny@1/{rel}") == data
        assert populated.path(f"acme/tiny@1/{rel}").read_bytes() == data
    r = populated.resolve("acme/tiny/tokenizer/vocab.txt")
    assert r.entry is not None and r.entry.name == "acme/tiny" and r.path == "tokenizer/vocab.txt"
    with pytest.raises(NotFoundError):
        populated.resolve("acme/tiny@1/missing.txt")


def test_tree_itself_cannot_be_opened_as_a_file(populated: DefaultModelManager) -> None:
    with pytest.raises(UsageError) as info:
        populated.open("acme/tiny")
    assert "acme/tiny@1/<path>" in str(info.value)
    with pytest.raises(UsageError):
        populated.path("acme/tiny@1")


def test_bare_digest_and_digest_path(populated: DefaultModelManager) -> None:
    d = "blake3:" + hexof(b"version one")
    assert read(populated, d) == b"version one"
    assert populated.path(d).read_bytes() == b"version one"
    tree_digest = populated.manifest.get_model_info("acme/tiny").digest
    assert read(populated, f"{tree_digest}/config.json") == TREE["config.json"]
    Tree.decode(read(populated, str(tree_digest)))  # a bare tree digest opens the document


def test_bare_digest_needs_no_project(tmp_path: Path, vv_home: Path) -> None:
    store = BlobStore(vv_home)
    d = store.publish_bytes(b"free blob").digest
    (tmp_path / "noproject").mkdir()
    mgr = DefaultModelManager(tmp_path / "noproject", vv_home)
    assert read(mgr, str(d)) == b"free blob"


def test_missing_model_and_blob(populated: DefaultModelManager) -> None:
    with pytest.raises(ModelNotFoundError):
        populated.resolve("nope")
    with pytest.raises(ModelNotFoundError):
        populated.resolve("net@9")
    with pytest.raises(BlobNotFoundError):
        populated.open("blake3:" + "0" * 64)


def test_bad_refs_are_usage_errors(populated: DefaultModelManager) -> None:
    for ref in ["net@1.0/../../etc/passwd", "acme/tiny/../x", "../x", "blake3:XYZ"]:
        with pytest.raises(UsageError):
            populated.resolve(ref)


def test_is_present_and_deleted_blob(populated: DefaultModelManager) -> None:
    net = populated.manifest.get_model_info("net", "1.0")
    tiny = populated.manifest.get_model_info("acme/tiny")
    assert populated.is_present(net) and populated.is_present(tiny)
    populated.store.delete(Digest.parse(net.digest or ""))
    assert not populated.is_present(net)
    with pytest.raises(BlobNotFoundError):
        populated.open("net@1.0")
    populated.store.delete(Digest("".join(hexof(TREE["tokenizer/vocab.txt"]))))
    assert not populated.is_present(tiny)


def test_open_refuses_a_blob_of_the_wrong_size(populated: DefaultModelManager) -> None:
    path = populated.path("net@1.0")
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered, and longer")
    with pytest.raises(IntegrityError):
        populated.open("net@1.0")


def test_show(populated: DefaultModelManager) -> None:
    info = populated.show("acme/tiny")
    assert info["ref"] == "acme/tiny@1" and info["kind"] == "tree" and info["present"] is True
    assert [f["path"] for f in info["files"]] == sorted(TREE)
    info = populated.show("net@1.0")
    assert info["digest"] == "blake3:" + hexof(b"version one") and info["file"] == "net.onnx"
    info = populated.show("blake3:" + hexof(b"version two"))
    assert info["present"] is True and info["size"] == len(b"version two")


def test_remove(populated: DefaultModelManager, vv_home: Path) -> None:
    before = blob_files(vv_home)
    gone = populated.remove("net@1.0")
    assert [g.ref for g in gone] == ["net@1.0"]
    assert [m.ref for m in populated.list_models()] == ["net@1.10", "acme/tiny@1"]
    gone = populated.remove("acme/tiny")
    assert [g.ref for g in gone] == ["acme/tiny@1"]
    assert [
        m.ref for m in ModelManifest.load_manifest(populated.manifest.path).list_all_models()
    ] == ["net@1.10"]
    assert blob_files(vv_home) == before  # bytes are left to gc
    with pytest.raises(ModelNotFoundError):
        populated.remove("acme/tiny")
    with pytest.raises(UsageError):
        populated.remove("net/net.onnx")
    with pytest.raises(UsageError):
        populated.remove("blake3:" + "0" * 64)
