"""The manifest: strict schema with exact error paths, stable atomic saves, queries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cas.digest import hash_bytes
from cas.errors import ManifestError, ModelNotFoundError, ProjectNotFoundError, UsageError
from cas.manifest import (
    Manifest,
    ModelEntry,
    ModelManifest,
    Policy,
    decode_manifest,
    encode_manifest,
    find_manifest,
    version_key,
)

D1 = str(hash_bytes(b"1"))

FULL_YAML = f"""\
models:
  - name: resnet50
    version: "1.2.0"
    format: onnx
    sources: [hf://timm/resnet50@abc/model.onnx, s3://models/resnet50.onnx]
    digest: {D1}
    size: 1
    tags: [vision, classification]
    description: An image classifier
  - name: acme/tiny
    version: "1.10"
    kind: tree
remotes:
  origin: s3://team-bucket/vvstore
policy:
  max_size: 50GB
  ttl: 30d
"""


def load(text: str, name: str = "vvstore.yaml") -> Manifest:
    return decode_manifest(text.encode(), name)


def refused(text: str, name: str = "vvstore.yaml") -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(text, name)
    assert info.value.exit_code == 3
    assert name in str(info.value)
    return info.value


# --- decoding ---------------------------------------------------------------------------------


def test_full_yaml_decodes() -> None:
    m = load(FULL_YAML)
    assert [e.ref for e in m.models] == ["resnet50@1.2.0", "acme/tiny@1.10"]
    r = m.models[0]
    assert r.format == "onnx" and r.digest == D1 and r.size == 1
    assert r.tags == ["vision", "classification"] and r.kind == "file"
    assert r.sources[1] == "s3://models/resnet50.onnx"
    assert m.models[1].kind == "tree"
    assert m.remotes == {"origin": "s3://team-bucket/vvstore"}
    assert m.policy == Policy(max_size="50GB", ttl="30d")


@pytest.mark.parametrize("name", ["vvstore.yaml", "vvstore.json"])
def test_round_trip(name: str) -> None:
    m = load(FULL_YAML)
    data = encode_manifest(m, name)
    if name.endswith(".json"):
        json.loads(data)
    again = decode_manifest(data, name)
    assert again == m
    assert encode_manifest(again, name) == data


@pytest.mark.parametrize("text", ["", "\n", "# just a comment\n", "models: []\n", "{}\n"])
def test_empty_documents(text: str) -> None:
    assert load(text) == Manifest()


def test_version_string_survives_yaml_round_trip() -> None:
    m = Manifest(models=[ModelEntry(name="m", version="1.10"), ModelEntry(name="m", version="2")])
    back = decode_manifest(encode_manifest(m, "vvstore.yaml"), "vvstore.yaml")
    assert [e.version for e in back.models] == ["1.10", "2"]


@pytest.mark.parametrize("field", ["foo", "sha256", "Name"])
def test_unknown_model_field_names_its_path(field: str) -> None:
    err = refused(f'models:\n  - name: a\n    version: "1"\n    {field}: 1\n')
    assert f"$.models[0].{field}" in str(err)


def test_unknown_top_level_field() -> None:
    err = refused("modles: []\n")
    assert "modles" in str(err)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('models:\n  - name: a\n    version: "1"\n    size: big\n', "$.models[0].size"),
        ('models:\n  - name: a\n    version: "1"\n    size: -1\n', "$.models[0].size"),
        ('models:\n  - name: a\n    version: "1"\n    tags: vision\n', "$.models[0].tags"),
        ('models:\n  - name: a\n    version: "1"\n    tags: [""]\n', "$.models[0].tags[0]"),
        ('models:\n  - name: a\n    version: "1"\n    kind: blob\n', "$.models[0].kind"),
        ('models:\n  - name: a\n    version: "1"\n    digest: md5:abc\n', "$.models[0].digest"),
        (
            'models:\n  - name: a\n    version: "1"\n'
            '  - name: b\n    version: "1"\n    sources: x\n',
            "$.models[1].sources",
        ),
        ("models:\n  - name: a\n", "$.models[0]"),
        ("models: {}\n", "$.models"),
        ("policy:\n  auto: maybe\n", "$.policy.auto"),
    ],
)
def test_wrong_types_name_the_path(text: str, path: str) -> None:
    err = refused(text)
    assert err.field == path or (err.field or "").startswith(path)
    assert path in str(err)


@pytest.mark.parametrize("version", ["1.10", "2.0", "3"])
def test_unquoted_number_version_gives_the_quoting_hint(version: str) -> None:
    err = refused(f"models:\n  - name: a\n    version: {version}\n")
    assert err.field == "$.models[0].version"
    assert err.hint and "quote" in err.hint


@pytest.mark.parametrize("bad", ["../x", "/etc", "a b", "a//b", "C:\\\\x"])
def test_bad_name_inside_manifest(bad: str) -> None:
    err = refused(f'models:\n  - name: ok\n    version: "1"\n  - name: "{bad}"\n    version: "1"\n')
    assert err.field == "$.models[1].name"
    assert "$.models[1].name" in str(err)


def test_bad_version_and_file_inside_manifest() -> None:
    assert refused('models:\n  - name: a\n    version: "1/2"\n').field == "$.models[0].version"
    err = refused('models:\n  - name: a\n    version: "1"\n    file: ../../etc/passwd\n')
    assert err.field == "$.models[0].file"


def test_duplicates_refused() -> None:
    err = refused(
        'models:\n  - name: a\n    version: "1"\n  - name: b\n    version: "1"\n'
        '  - name: a\n    version: "1"\n'
    )
    assert err.field == "$.models[2]"
    assert "a@1" in str(err)


def test_same_name_other_version_is_not_a_duplicate() -> None:
    assert (
        len(load('models:\n  - name: a\n    version: "1"\n  - name: a\n    version: "2"\n').models)
        == 2
    )


def test_invalid_yaml_and_json() -> None:
    err = refused("models: [\n")
    assert "YAML" in str(err)
    err = refused("{nope", "vvstore.json")
    assert "JSON" in str(err)


def test_json_unknown_field_names_its_path() -> None:
    err = refused(
        json.dumps({"models": [{"name": "a", "version": "1", "bogus": 1}]}), "vvstore.json"
    )
    assert "$.models[0].bogus" in str(err)


# --- files ------------------------------------------------------------------------------------


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vvstore.yaml"
    path.write_text('models:\n  - name: a\n    version: "1"\n    colour: red\n')
    with pytest.raises(ManifestError) as info:
        ModelManifest.load_manifest(path)
    assert info.value.file == str(path)
    assert str(path) in str(info.value)


def test_load_missing_and_find_upward(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFoundError):
        ModelManifest.load_manifest(tmp_path / "vvstore.yaml")
    (tmp_path / "vvstore.yaml").write_text("models: []\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_manifest(deep) == tmp_path / "vvstore.yaml"
    assert ModelManifest.load_manifest(deep).path == tmp_path / "vvstore.yaml"


def test_json_manifest_file(tmp_path: Path) -> None:
    path = tmp_path / "vvstore.json"
    path.write_text(json.dumps({"models": [{"name": "a", "version": "1", "tags": ["x"]}]}))
    mm = ModelManifest.load_manifest(tmp_path)
    assert mm.path == path and mm.get_model_info("a").tags == ["x"]
    mm.update_manifest(ModelEntry(name="b", version="2"))
    assert [m["name"] for m in json.loads(path.read_text())["models"]] == ["a", "b"]


def test_save_is_byte_stable_and_leaves_unchanged_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "vvstore.yaml"
    mm = ModelManifest(path, load(FULL_YAML))
    mm.save()
    first = path.read_bytes()
    os.utime(path, (1_000_000_000, 1_000_000_000))
    ino = os.stat(path).st_ino
    mm.save()
    assert path.read_bytes() == first
    assert os.stat(path).st_mtime == 1_000_000_000
    assert os.stat(path).st_ino == ino
    again = ModelManifest.load_manifest(path)
    again.save()
    assert path.read_bytes() == first and os.stat(path).st_mtime == 1_000_000_000


def test_save_is_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "vvstore.yaml"
    mm = ModelManifest(path)
    mm.update_manifest(ModelEntry(name="a", version="1"))
    ino = os.stat(path).st_ino
    mm.update_manifest(ModelEntry(name="b", version="1"))
    assert os.stat(path).st_ino != ino  # replaced, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vvstore.yaml"]  # no temp debris


# --- queries ----------------------------------------------------------------------------------


@pytest.fixture
def mm(tmp_path: Path) -> ModelManifest:
    m = ModelManifest(tmp_path / "vvstore.yaml")
    for name, version, fmt, tags, desc in [
        ("resnet50", "1.2.0", "onnx", ["vision"], "Image classifier"),
        ("resnet50", "1.10.0", "onnx", ["vision", "prod"], None),
        ("resnet50", "1.9", "onnx", [], None),
        ("resnet50", "nightly", None, [], None),
        ("acme/tiny", "1", "safetensors", ["text"], "Tiny LM"),
    ]:
        m.update_manifest(
            ModelEntry(name=name, version=version, format=fmt, tags=tags, description=desc),
            save=False,
        )
    m.save()
    return m


def test_get_model_info_highest_pep440_wins(mm: ModelManifest) -> None:
    assert mm.get_model_info("resnet50").version == "1.10.0"  # not "nightly", not "1.9"
    assert mm.get_model_info("resnet50", "1.9").version == "1.9"
    assert mm.get_model_info("resnet50", "nightly").version == "nightly"


def test_get_model_info_missing(mm: ModelManifest) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        mm.get_model_info("nope")
    assert "nope" in str(info.value) and info.value.exit_code == 4
    with pytest.raises(ModelNotFoundError) as info:
        mm.get_model_info("resnet50", "9")
    assert "resnet50@9" in str(info.value)


def test_version_key_orders_pep440_above_others() -> None:
    assert sorted(["nightly", "1.10", "1.9", "2.0rc1", "2.0"], key=version_key) == [
        "nightly",
        "1.9",
        "1.10",
        "2.0rc1",
        "2.0",
    ]


def test_update_manifest_replace_vs_append(mm: ModelManifest) -> None:
    before = len(mm.list_all_models())
    old = mm.update_manifest(ModelEntry(name="resnet50", version="1.9", format="pytorch"))
    assert old is not None and old.format == "onnx"
    assert len(mm.list_all_models()) == before
    assert mm.get_model_info("resnet50", "1.9").format == "pytorch"
    idx = [m.ref for m in mm.list_all_models()].index("resnet50@1.9")
    assert idx == 2  # replaced in place
    assert mm.update_manifest(ModelEntry(name="new", version="1")) is None
    assert mm.list_all_models()[-1].ref == "new@1"
    reloaded = ModelManifest.load_manifest(mm.path)
    assert [m.ref for m in reloaded.list_all_models()] == [m.ref for m in mm.list_all_models()]


def test_update_manifest_validates(mm: ModelManifest) -> None:
    with pytest.raises(UsageError):
        mm.update_manifest(ModelEntry(name="../x", version="1"))
    with pytest.raises(UsageError):
        mm.update_manifest(ModelEntry(name="x", version="a/b"))
    assert "../x" not in mm.path.read_text()


def test_remove_model(mm: ModelManifest) -> None:
    gone = mm.remove_model("resnet50", "1.9")
    assert [g.ref for g in gone] == ["resnet50@1.9"]
    assert "resnet50@1.9" not in {
        m.ref for m in ModelManifest.load_manifest(mm.path).list_all_models()
    }
    gone = mm.remove_model("resnet50")
    assert len(gone) == 3
    assert [m.ref for m in mm.list_all_models()] == ["acme/tiny@1"]
    with pytest.raises(ModelNotFoundError):
        mm.remove_model("resnet50")


def test_list_all_models_in_file_order(mm: ModelManifest) -> None:
    assert [m.ref for m in mm.list_all_models()] == [
        "resnet50@1.2.0",
        "resnet50@1.10.0",
        "resnet50@1.9",
        "resnet50@nightly",
        "acme/tiny@1",
    ]
    assert mm.names() == {"resnet50", "acme/tiny"}


def test_search(mm: ModelManifest) -> None:
    def refs(found: list[ModelEntry]) -> list[str]:
        return [m.ref for m in found]

    assert len(mm.search()) == 5
    assert refs(mm.search("TINY")) == ["acme/tiny@1"]
    assert refs(mm.search("classifier")) == ["resnet50@1.2.0"]  # description
    assert refs(mm.search("nightly")) == ["resnet50@nightly"]  # version
    assert refs(mm.search(tags=["vision"])) == ["resnet50@1.2.0", "resnet50@1.10.0"]
    assert refs(mm.search(tags=["vision", "prod"])) == ["resnet50@1.10.0"]
    assert refs(mm.search("prod")) == ["resnet50@1.10.0"]  # tags are searched text too
    assert refs(mm.search(format="safetensors")) == ["acme/tiny@1"]
    assert refs(mm.search("resnet", format="onnx", tags=["prod"])) == ["resnet50@1.10.0"]
    assert mm.search("zzz") == []
