"""`vvstore://`: the read-only fsspec filesystem over a project's models (cas/fs.py).

Models are added with the project facade (what `vvstore add` runs) or the real command where the
test is about what a user does at a shell. On-demand fetching uses the local HTTP test server
(tests/servers/http_server.py) on 127.0.0.1 only. Every test starts and ends with fsspec's
instance cache cleared, so no filesystem instance (and its manager) leaks from one test's store
or project into another's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import fsspec
import pytest
from fsspec.callbacks import Callback

from cas.blobs import BlobStore
from cas.digest import Digest
from cas.fs import VVStoreFileSystem
from cas.manager import DefaultModelManager
from tests.servers.http_server import FaultyHTTPServer

pytestmark = pytest.mark.timeout(60)

ONE = random.Random(1).randbytes(64 * 1024 + 7)  # one@1.10, a single-file model
ONE_OLD = random.Random(2).randbytes(1000)  # one@1.9: lower than 1.10 as a version
TREE: dict[str, bytes] = {  # acme/tree@2.0, a directory model
    "config.json": b'{"hidden_size": 8}\n',
    "README.md": b"# tiny\n",
    "weights/model-00001-of-00002.safetensors": random.Random(3).randbytes(5000),
    "weights/model-00002-of-00002.safetensors": random.Random(4).randbytes(3000),
    "weights/nested/adapter.safetensors": random.Random(5).randbytes(700),
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "tokenizer/copy-of-config.json": b'{"hidden_size": 8}\n',  # same bytes as config.json
}
SAFETENSORS = sorted(p for p in TREE if p.endswith(".safetensors"))
READ_ONLY_HINT = "vvstore add"


def b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def blob_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "blobs").rglob("*") if p.is_file())


def empty_store(home: Path) -> None:
    store = BlobStore(home)
    for b in list(store.iter_blobs()):
        store.delete(b.digest)
    assert not blob_files(home)


def gets(server: FaultyHTTPServer, path: str) -> int:
    return sum(1 for method, p, _, _ in server.requests if method == "GET" and p == path)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FSSPEC_VVSTORE_") and k != "VVSTORE_FAILPOINTS"}
    env.update(extra)
    return env


class Counting(Callback):
    """Records every set_size and relative_update; `branched` children record theirs too."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int | None] = []
        self.updates: list[int] = []
        self.children: list[tuple[str, str, Counting]] = []

    def set_size(self, size: int | None) -> None:
        self.sizes.append(size)
        super().set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        self.updates.append(inc)
        super().relative_update(inc)

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Counting:
        child = Counting()
        self.children.append((path_1, path_2, child))
        return child


@pytest.fixture(autouse=True)
def _fresh_instances() -> Iterator[None]:
    VVStoreFileSystem.clear_instance_cache()
    yield
    VVStoreFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(project, store) holding one@1.9, one@1.10 (single files `one.onnx`) and acme/tree@2.0,
    added once per module with the facade `vvstore add` runs; tests work on copies."""
    base = tmp_path_factory.mktemp("fs_template")
    project, store, src = base / "project", base / "store", base / "src"
    (src / "old").mkdir(parents=True)
    (src / "old" / "one.onnx").write_bytes(ONE_OLD)
    (src / "one.onnx").write_bytes(ONE)
    m = DefaultModelManager(project, store)
    m.init()
    m.add([str(src / "old" / "one.onnx")], name="one", version="1.9")
    m.add([str(src / "one.onnx")], name="one", version="1.10")
    m.add([str(write_tree(src / "tree", TREE))], name="acme/tree", version="2.0")
    return project, store


@pytest.fixture
def project(template: tuple[Path, Path], vv_home: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the template project and store ($VVSTORE_HOME); cwd is the project."""
    project = tmp_path / "project"
    shutil.copytree(template[0], project)
    shutil.copytree(template[1], vv_home)
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def models(project: Path, vv_home: Path) -> DefaultModelManager:
    return DefaultModelManager(project, vv_home)


@pytest.fixture
def fs(models: DefaultModelManager) -> VVStoreFileSystem:
    """The filesystem as any fsspec user gets it: by protocol name, project found from cwd."""
    return fsspec.filesystem("vvstore")


# --- registration and a fresh process -----------------------------------------------------------


def test_protocol_is_registered_through_the_entry_point() -> None:
    assert fsspec.get_filesystem_class("vvstore") is VVStoreFileSystem
    assert "vvstore" in VVStoreFileSystem.protocol
    url = "vvstore://acme/tree@2.0/config.json"
    assert VVStoreFileSystem._strip_protocol(url) == "acme/tree@2.0/config.json"


READER = textwrap.dedent("""
    import json, sys
    import fsspec
    before = "cas" in sys.modules
    out = {"cas_imported_before_open": before}
    with fsspec.open("vvstore://one@1.10/one.onnx", "rb") as f:
        out["one"] = f.read().hex()
    with fsspec.open("vvstore://acme/tree/weights/nested/adapter.safetensors", "rb") as f:
        out["adapter"] = f.read().hex()
    out["local"] = fsspec.open_local("vvstore://one@1.10")
    out["cas_fs_imported_after"] = "cas.fs" in sys.modules
    print(json.dumps(out))
""")


def _run_reader(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", READER], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_fresh_process_reads_by_url_with_project_from_cwd(models: DefaultModelManager,
                                                          project: Path, vv_home: Path) -> None:
    """No `import cas` in the reader: fsspec finds `vvstore` by its entry point."""
    out = _run_reader(project, clean_env(VVSTORE_HOME=str(vv_home)))
    assert out["cas_imported_before_open"] is False
    assert out["cas_fs_imported_after"] is True  # loaded by fsspec, through the entry point
    assert bytes.fromhex(out["one"]) == ONE
    assert bytes.fromhex(out["adapter"]) == TREE["weights/nested/adapter.safetensors"]
    assert out["local"] == str(models.path("one@1.10"))


def test_fresh_process_reads_with_project_from_env_in_another_cwd(
    models: DefaultModelManager, project: Path, vv_home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(VVSTORE_HOME=str(vv_home), FSSPEC_VVSTORE_PROJECT=str(project))
    out = _run_reader(elsewhere, env)
    assert out["cas_imported_before_open"] is False
    assert bytes.fromhex(out["one"]) == ONE
    assert bytes.fromhex(out["adapter"]) == TREE["weights/nested/adapter.safetensors"]


def test_project_and_store_as_storage_options(models: DefaultModelManager, project: Path,
                                              vv_home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VVSTORE_HOME", str(tmp_path / "some-other-store"))
    with fsspec.open("vvstore://acme/tree@2.0/config.json", "rb", project=str(project),
                     store=str(vv_home)) as f:
        assert f.read() == TREE["config.json"]


# --- the path forms ---------------------------------------------------------------------------


def test_name_at_version_of_a_single_file_model_is_the_file(fs: VVStoreFileSystem) -> None:
    info = fs.info("vvstore://one@1.10")
    assert info["type"] == "file"
    assert info["size"] == len(ONE)
    assert info["digest"] == b3(ONE)
    assert fs.cat_file("vvstore://one@1.10") == ONE
    assert fs.cat_file("vvstore://one@1.10/one.onnx") == ONE  # by its own file name too
    assert fs.cat_file("vvstore://one@1.9") == ONE_OLD
    assert fs.isfile("vvstore://one@1.10") and not fs.isdir("vvstore://one@1.10")


def test_bare_name_is_the_highest_version(fs: VVStoreFileSystem) -> None:
    """1.10 > 1.9 as versions (not as strings)."""
    with fs.open("vvstore://one", "rb") as f:
        assert f.read() == ONE
    assert fs.info("vvstore://one")["digest"] == b3(ONE)
    assert fs.cat_file("vvstore://one/one.onnx") == ONE


def test_tree_model_is_a_directory_of_its_files(fs: VVStoreFileSystem) -> None:
    for path in ("vvstore://acme/tree", "vvstore://acme/tree@2.0", "vvstore://acme/tree@2.0/"):
        assert fs.info(path)["type"] == "directory"
        assert fs.isdir(path) and not fs.isfile(path)
    for rel, data in TREE.items():
        assert fs.cat_file(f"vvstore://acme/tree/{rel}") == data
        assert fs.cat_file(f"vvstore://acme/tree@2.0/{rel}") == data
    with pytest.raises(IsADirectoryError):
        fs.open("vvstore://acme/tree@2.0", "rb")


def test_bare_digest(fs: VVStoreFileSystem) -> None:
    digest = b3(ONE)
    assert fs.cat_file(f"vvstore://{digest}") == ONE
    info = fs.info(f"vvstore://{digest}")
    assert (info["type"], info["size"], info["digest"]) == ("file", len(ONE), digest)
    with fsspec.open(f"vvstore://{digest}", "rb") as f:
        assert f.read(10) == ONE[:10]
    tree = next(e["digest"] for e in fs.ls("vvstore://") if e["name"] == "acme/tree@2.0")
    assert fs.cat_file(f"vvstore://{tree}/tokenizer/vocab.txt") == TREE["tokenizer/vocab.txt"]


# --- ls, info, find, glob, exists -----------------------------------------------------------


def test_ls_root_lists_the_models(fs: VVStoreFileSystem) -> None:
    entries = {e["name"]: e for e in fs.ls("vvstore://", detail=True)}
    assert set(entries) == {"one@1.9", "one@1.10", "acme/tree@2.0"}
    assert entries["one@1.10"]["type"] == "file"
    assert entries["one@1.10"]["size"] == len(ONE)
    assert entries["one@1.10"]["digest"] == b3(ONE)
    assert entries["acme/tree@2.0"]["type"] == "directory"
    assert sorted(fs.ls("", detail=False)) == sorted(entries)


def test_ls_and_info_inside_a_tree(fs: VVStoreFileSystem) -> None:
    top = {e["name"]: e for e in fs.ls("vvstore://acme/tree@2.0", detail=True)}
    assert set(top) == {"acme/tree@2.0/config.json", "acme/tree@2.0/README.md",
                        "acme/tree@2.0/weights", "acme/tree@2.0/tokenizer"}
    assert top["acme/tree@2.0/weights"]["type"] == "directory"
    assert top["acme/tree@2.0/config.json"]["type"] == "file"

    weights = {e["name"]: e for e in fs.ls("vvstore://acme/tree/weights", detail=True)}
    assert set(weights) == {"acme/tree/weights/model-00001-of-00002.safetensors",
                            "acme/tree/weights/model-00002-of-00002.safetensors",
                            "acme/tree/weights/nested"}
    for rel, data in TREE.items():
        info = fs.info(f"vvstore://acme/tree/{rel}")
        assert info["name"] == f"acme/tree/{rel}"
        assert (info["type"], info["size"], info["digest"]) == ("file", len(data), b3(data))
        if rel.startswith("weights/model"):
            assert weights[info["name"]] == info  # ls and info agree
    assert fs.info("vvstore://acme/tree/weights/nested")["type"] == "directory"
    assert fs.size("vvstore://acme/tree/README.md") == len(TREE["README.md"])
    assert fs.du("vvstore://acme/tree") == sum(map(len, TREE.values()))


def test_find_lists_every_file_of_a_tree(fs: VVStoreFileSystem) -> None:
    assert fs.find("vvstore://acme/tree") == sorted(f"acme/tree/{rel}" for rel in TREE)
    found = fs.find("vvstore://acme/tree@2.0", withdirs=True, detail=True)
    dirs = sorted(n for n, e in found.items() if e["type"] == "directory")
    assert dirs == ["acme/tree@2.0", "acme/tree@2.0/tokenizer", "acme/tree@2.0/weights",
                    "acme/tree@2.0/weights/nested"]
    assert {n: e["size"] for n, e in found.items() if e["type"] == "file"} == {
        f"acme/tree@2.0/{rel}": len(data) for rel, data in TREE.items()}
    assert fs.find("vvstore://acme/tree", maxdepth=1) == sorted(
        f"acme/tree/{rel}" for rel in TREE if "/" not in rel)


def test_glob_over_a_tree_model(fs: VVStoreFileSystem) -> None:
    assert fs.glob("vvstore://acme/tree/**/*.safetensors") == [
        f"acme/tree/{p}" for p in SAFETENSORS]
    assert fs.glob("vvstore://acme/tree@2.0/weights/*.safetensors") == [
        "acme/tree@2.0/weights/model-00001-of-00002.safetensors",
        "acme/tree@2.0/weights/model-00002-of-00002.safetensors"]
    assert fs.glob("vvstore://acme/tree/*.json") == ["acme/tree/config.json"]
    assert fs.cat("vvstore://acme/tree/**/*.safetensors") == {
        f"acme/tree/{p}": TREE[p] for p in SAFETENSORS}
    files = fsspec.open_files("vvstore://acme/tree/**/*.safetensors", "rb")
    assert len(files) == len(SAFETENSORS)
    for of, rel in zip(files, SAFETENSORS, strict=True):
        with of as f:
            assert f.read() == TREE[rel]


def test_exists_isdir_isfile(fs: VVStoreFileSystem) -> None:
    cases = {
        "vvstore://one@1.10": (True, False, True),
        "vvstore://one": (True, False, True),
        "vvstore://acme/tree": (True, True, False),
        "vvstore://acme/tree/weights": (True, True, False),
        "vvstore://acme/tree/weights/nested/adapter.safetensors": (True, False, True),
        "vvstore://acme/tree/weights/none.safetensors": (False, False, False),
        "vvstore://nope": (False, False, False),
        "vvstore://one@7": (False, False, False),
    }
    for path, (exists, isdir, isfile) in cases.items():
        assert (fs.exists(path), fs.isdir(path), fs.isfile(path)) == (exists, isdir, isfile), path


MISSING = [
    "vvstore://nope",
    "vvstore://nope@1",
    "vvstore://one@9.9",
    "vvstore://one@1.10/other.onnx",
    "vvstore://acme/tree/missing.bin",
    "vvstore://acme/tree@2.0/weights/missing/deeper.bin",
    "vvstore://acme/tree@2.0/config.json/under-a-file",
    "vvstore://acme/tree@3.0/config.json",
    "vvstore://blake3:" + "0" * 64,
]


@pytest.mark.parametrize("path", MISSING)
def test_missing_paths_raise_file_not_found(fs: VVStoreFileSystem, path: str) -> None:
    assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.info(path)
    with pytest.raises(FileNotFoundError):
        fs.ls(path)
    with pytest.raises(FileNotFoundError):
        fs.cat_file(path)
    with pytest.raises(FileNotFoundError):
        fs.open(path, "rb")
    with pytest.raises(FileNotFoundError):
        fsspec.open(path, "rb").open()


# --- reading ------------------------------------------------------------------------------------

RANGES = [(None, None), (0, 10), (10, 100), (100, None), (-16, None), (-16, -4), (0, -1),
          (-10 ** 9, 5), (len(ONE) - 3, len(ONE) + 100), (len(ONE) + 5, None), (50, 20), (None, 0)]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_cat_file_ranges_are_python_slices(fs: VVStoreFileSystem, start: int | None,
                                           end: int | None) -> None:
    assert fs.cat_file("vvstore://one@1.10", start=start, end=end) == ONE[start:end]
    data = TREE["weights/model-00002-of-00002.safetensors"]
    got = fs.cat_file("vvstore://acme/tree/weights/model-00002-of-00002.safetensors", start, end)
    assert got == data[start:end]


def test_open_rb_is_seekable_and_reads_ranges(fs: VVStoreFileSystem) -> None:
    with fs.open("vvstore://one@1.10", "rb") as f:
        assert f.seekable() and f.readable() and not f.writable()
        assert f.seek(0, os.SEEK_END) == len(ONE)
        f.seek(1000)
        assert f.read(50) == ONE[1000:1050]
        assert f.tell() == 1050
        f.seek(-10, os.SEEK_END)
        assert f.read() == ONE[-10:]
        f.seek(5)
        f.seek(7, os.SEEK_CUR)
        assert f.read(3) == ONE[12:15]
    with fsspec.open("vvstore://acme/tree/config.json", "r", encoding="utf-8") as t:
        assert t.read() == TREE["config.json"].decode()


def test_head_tail_and_read_block(fs: VVStoreFileSystem) -> None:
    """fsspec helpers built on open(): read_block reads the opened file's `size`."""
    assert fs.head("vvstore://one@1.10", 100) == ONE[:100]
    assert fs.tail("vvstore://one@1.10", 100) == ONE[-100:]
    assert fs.read_block("vvstore://one@1.10", 1000, 500) == ONE[1000:1500]
    assert fs.read_block("vvstore://one@1.10", len(ONE) - 10, 500) == ONE[-10:]


def test_open_returns_the_blob_file_and_freshens_it(fs: VVStoreFileSystem,
                                                    models: DefaultModelManager) -> None:
    blob = models.path("one@1.10")
    os.utime(blob, (1_000_000, 1_000_000))
    with fs.open("vvstore://one@1.10", "rb") as f:
        assert os.path.samefile(f.name, blob)  # a real file on the blob: zero copy
        assert os.fstat(f.fileno()).st_ino == os.stat(blob).st_ino
    assert os.stat(blob).st_mtime > time.time() - 600


def test_open_local_is_the_blob_path_vvstore_path_prints(
    fs: VVStoreFileSystem, vvstore_cmd: list[str], project: Path, vv_home: Path
) -> None:
    for url, ref in [("vvstore://one@1.10", "one@1.10"),
                     ("vvstore://acme/tree@2.0/weights/nested/adapter.safetensors",
                      "acme/tree@2.0/weights/nested/adapter.safetensors")]:
        proc = subprocess.run([*vvstore_cmd, "path", ref], cwd=project, capture_output=True,
                              text=True, env=clean_env(VVSTORE_HOME=str(vv_home)), timeout=60)
        assert proc.returncode == 0, proc.stderr
        local = fsspec.open_local(url)
        assert local == proc.stdout.strip()
        assert Path(local).is_relative_to(vv_home)
        digest_hex = Path(local).parent.name + Path(local).name
        assert blake3.blake3(Path(local).read_bytes()).hexdigest() == digest_hex
    paths = fsspec.open_local("vvstore://acme/tree/**/*.safetensors")
    assert [Path(p).read_bytes() for p in paths] == [TREE[p] for p in SAFETENSORS]


def test_ukey_and_checksum_come_from_the_digest(fs: VVStoreFileSystem) -> None:
    assert fs.ukey("vvstore://one@1.10") == b3(ONE)
    assert fs.ukey("vvstore://acme/tree/config.json") == b3(TREE["config.json"])
    # identical bytes in two places: one digest, one checksum; other bytes: another
    same = ("vvstore://acme/tree/config.json", "vvstore://acme/tree@2.0/tokenizer/copy-of-config.json")
    assert fs.ukey(same[0]) == fs.ukey(same[1])
    assert fs.checksum(same[0]) == fs.checksum(same[1])
    assert isinstance(fs.checksum(same[0]), int)
    assert fs.checksum("vvstore://one@1.10") != fs.checksum(same[0])
    assert fs.checksum("vvstore://one@1.10") == fs.checksum(f"vvstore://{b3(ONE)}")
    assert fs.checksum("vvstore://one@1.10") != fs.checksum("vvstore://one@1.9")


# --- get, with progress -------------------------------------------------------------------------


def test_get_a_tree_model_to_a_local_dir_with_progress(fs: VVStoreFileSystem,
                                                       tmp_path: Path) -> None:
    dest = tmp_path / "out"
    cb = Counting()
    fs.get("vvstore://acme/tree@2.0", str(dest), recursive=True, callback=cb)
    got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == TREE
    # the top level counts transfers (files, and the directories it creates), one by one
    assert len(cb.sizes) == 1 and cb.sizes[0] == len(cb.children) >= len(TREE)
    assert cb.value == cb.size
    # each file's transfer reports its byte size first, then bytes that add up to it
    by_src = {src: child for src, _, child in cb.children}
    for rel, data in TREE.items():
        child = by_src[f"acme/tree@2.0/{rel}"]
        assert child.sizes == [len(data)], rel
        assert sum(child.updates) == len(data) == child.value


def test_get_file_reports_the_size_then_the_bytes(fs: VVStoreFileSystem, tmp_path: Path) -> None:
    cb = Counting()
    fs.get_file("vvstore://one", str(tmp_path / "one.onnx"), callback=cb)
    assert (tmp_path / "one.onnx").read_bytes() == ONE
    assert cb.sizes == [len(ONE)]
    assert sum(cb.updates) == len(ONE)


def test_get_single_file_model_and_glob(fs: VVStoreFileSystem, tmp_path: Path) -> None:
    fs.get("vvstore://one@1.10", str(tmp_path / "model.onnx"))
    assert (tmp_path / "model.onnx").read_bytes() == ONE
    dest = tmp_path / "st"
    dest.mkdir()
    fs.get("vvstore://acme/tree/weights/*.safetensors", str(dest) + "/")
    assert sorted(p.name for p in dest.iterdir()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


# --- on-demand fetch ------------------------------------------------------------------------


@pytest.fixture
def remote(vv_manager: DefaultModelManager, vv_project: Path, vv_home: Path,
           http_server: FaultyHTTPServer, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> FaultyHTTPServer:
    """remote@1 (one file) and remote/tree@1 (a tree) whose sources are the local HTTP server,
    recorded by add and locked; then the store is emptied of every blob."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    http_server.files["/files/remote.safetensors"] = ONE
    for rel, data in TREE.items():
        http_server.files[f"/trees/acme/{rel}"] = data
    vv_manager.add([http_server.url("/files/remote.safetensors")], name="remote")
    # a tree from a local directory, given the server's copy as its source
    (added,) = vv_manager.add([str(write_tree(tmp_path / "treesrc", TREE))], name="remote/tree")
    entry = added.entry
    entry.sources = [http_server.url("/trees/acme")]
    vv_manager.manifest.update_manifest(entry)
    vv_manager.update_lock([entry])
    empty_store(vv_home)
    http_server.reset_counters()
    monkeypatch.chdir(vv_project)
    return http_server


def test_open_fetches_a_missing_single_file_model_once(remote: FaultyHTTPServer,
                                                       vv_home: Path) -> None:
    fs = fsspec.filesystem("vvstore")
    with fs.open("vvstore://remote", "rb") as f:
        assert f.read() == ONE
    assert gets(remote, "/files/remote.safetensors") == 1
    with fsspec.open("vvstore://remote@1/remote.safetensors", "rb") as f:  # now from the store
        assert f.read() == ONE
    assert fs.cat_file("vvstore://remote", -5) == ONE[-5:]
    assert gets(remote, "/files/remote.safetensors") == 1
    blob = BlobStore(vv_home).path(Digest.parse(b3(ONE)))
    assert fsspec.open_local("vvstore://remote") == str(blob)


def test_open_fetches_a_file_of_a_missing_tree_model(remote: FaultyHTTPServer) -> None:
    """The tree document and the file are both absent: the first open fetches and reads."""
    fs = fsspec.filesystem("vvstore")
    rel = "weights/model-00001-of-00002.safetensors"
    with fs.open(f"vvstore://remote/tree@1/{rel}", "rb") as f:
        assert f.read() == TREE[rel]
    assert gets(remote, f"/trees/acme/{rel}") == 1
    assert fs.cat_file(f"vvstore://remote/tree/{rel}") == TREE[rel]
    assert gets(remote, f"/trees/acme/{rel}") == 1


def test_listing_a_missing_tree_model_fetches_it(remote: FaultyHTTPServer) -> None:
    fs = fsspec.filesystem("vvstore")
    assert fs.find("vvstore://remote/tree") == sorted(f"remote/tree/{rel}" for rel in TREE)
    assert fs.cat_file("vvstore://remote/tree/README.md") == TREE["README.md"]
    # every distinct content once (config.json and its copy are one blob), nothing twice
    assert all(gets(remote, f"/trees/acme/{rel}") <= 1 for rel in TREE)
    assert sum(gets(remote, f"/trees/acme/{rel}") for rel in TREE) == len(set(TREE.values()))


@pytest.mark.parametrize("path", ["vvstore://remote", "vvstore://remote@1/remote.safetensors",
                                  "vvstore://remote/tree/config.json", "vvstore://remote/tree@1"])
def test_fetch_false_refuses_naming_the_command(remote: FaultyHTTPServer, vv_home: Path,
                                                path: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"vvstore fetch remote"):
        with fsspec.open(path, "rb", fetch=False) as f:
            f.read()
    fs = VVStoreFileSystem(fetch=False, skip_instance_cache=True)
    with pytest.raises(FileNotFoundError, match=r"vvstore fetch"):
        fs.cat_file(path)
    assert remote.requests == []
    assert not blob_files(vv_home)


# --- read-only --------------------------------------------------------------------------------


WRITES = {
    "open wb": lambda fs, local: fs.open("vvstore://one@1.10", "wb"),
    "open ab": lambda fs, local: fs.open("vvstore://one@1.10", "ab"),
    "open xb new": lambda fs, local: fs.open("vvstore://brand-new/model.bin", "xb"),
    "open r+b": lambda fs, local: fs.open("vvstore://one@1.10", "r+b"),
    "open w text": lambda fs, local: fs.open("vvstore://acme/tree/config.json", "w"),
    "fsspec.open wb": lambda fs, local: fsspec.open("vvstore://brand-new/model.bin", "wb").open(),
    "pipe_file": lambda fs, local: fs.pipe_file("vvstore://brand-new/model.bin", b"bytes"),
    "pipe": lambda fs, local: fs.pipe("vvstore://acme/tree/config.json", b"{}"),
    "write_text": lambda fs, local: fs.write_text("vvstore://brand-new/notes.txt", "hi"),
    "put_file": lambda fs, local: fs.put_file(local, "vvstore://brand-new/model.bin"),
    "put": lambda fs, local: fs.put(local, "vvstore://brand-new/model.bin"),
    "rm": lambda fs, local: fs.rm("vvstore://one@1.10"),
    "rm recursive": lambda fs, local: fs.rm("vvstore://acme/tree", recursive=True),
    "rm_file": lambda fs, local: fs.rm_file("vvstore://acme/tree/config.json"),
    "rmdir": lambda fs, local: fs.rmdir("vvstore://acme/tree/weights"),
    "mkdir": lambda fs, local: fs.mkdir("vvstore://brand-new"),
    "makedirs": lambda fs, local: fs.makedirs("vvstore://brand-new/a/b", exist_ok=True),
    "touch new": lambda fs, local: fs.touch("vvstore://brand-new/empty.bin"),
    "touch existing": lambda fs, local: fs.touch("vvstore://one@1.10", truncate=False),
    "mv": lambda fs, local: fs.mv("vvstore://one@1.10", "vvstore://moved"),
    "copy": lambda fs, local: fs.copy("vvstore://one@1.10", "vvstore://copied"),
    "cp_file": lambda fs, local: fs.cp_file("vvstore://one@1.10", "vvstore://copied"),
}


@pytest.mark.parametrize("op", list(WRITES))
def test_every_write_is_refused_and_nothing_is_stored(fs: VVStoreFileSystem, project: Path,
                                                      vv_home: Path, tmp_path: Path,
                                                      op: str) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(b"would-be model bytes")
    before = {p: p.read_bytes() for p in sorted(project.rglob("*")) if p.is_file()}
    blobs = blob_files(vv_home)
    with pytest.raises(PermissionError) as exc:
        result = WRITES[op](fs, str(local))
        if hasattr(result, "write"):  # had it handed back a writer: write and close, to see
            try:
                result.write(b"x" if "b" in getattr(result, "mode", "b") else "x")
            finally:
                result.close()
    assert READ_ONLY_HINT in str(exc.value)
    assert {p: p.read_bytes() for p in sorted(project.rglob("*")) if p.is_file()} == before
    assert blob_files(vv_home) == blobs
    assert not list((vv_home / "tmp").iterdir())
    assert fs.cat_file("vvstore://one@1.10") == ONE
    assert not fs.exists("vvstore://brand-new")


# --- the manifest changing under one instance ---------------------------------------------------


def test_a_model_added_later_is_seen_by_the_same_instance(
    fs: VVStoreFileSystem, vvstore_cmd: list[str], project: Path, vv_home: Path, tmp_path: Path
) -> None:
    assert not fs.exists("vvstore://late")
    names = set(fs.ls("", detail=False))
    (tmp_path / "late.safetensors").write_bytes(b"late bytes")
    env = clean_env(VVSTORE_HOME=str(vv_home))
    add = [*vvstore_cmd, "-q", "add", str(tmp_path / "late.safetensors"), "--name", "late"]
    proc = subprocess.run(add, cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert fsspec.filesystem("vvstore") is fs  # the cached instance, not a new one
    assert fs.exists("vvstore://late")
    assert fs.cat_file("vvstore://late") == b"late bytes"
    assert set(fs.ls("", detail=False)) == names | {"late@1"}
    proc = subprocess.run([*vvstore_cmd, "-q", "rm", "late"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not fs.exists("vvstore://late")


def test_same_instance_follows_cwd_to_another_project(vv_home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checkouts of one template (manifests of equal size and, as `cp -p`, `tar x` or
    `rsync -a` leave them, equal mtime) naming different models: one cached instance with no
    `project=` must read the project of the current directory."""
    projects = {}
    for tag in ("a", "b"):
        p = tmp_path / f"proj-{tag}"
        m = DefaultModelManager(p, vv_home)
        m.init()
        (p / "m.bin").write_bytes(f"bytes of {tag}".encode())
        m.add([str(p / "m.bin")], name=f"model-{tag}")
        projects[tag] = p
    ma, mb = projects["a"] / "vvstore.yaml", projects["b"] / "vvstore.yaml"
    assert ma.stat().st_size == mb.stat().st_size
    st = ma.stat()
    os.utime(mb, ns=(st.st_atime_ns, st.st_mtime_ns))

    fs = fsspec.filesystem("vvstore")
    monkeypatch.chdir(projects["a"])
    assert fs.ls("", detail=False) == ["model-a@1"]
    monkeypatch.chdir(projects["b"])
    assert fs.ls("", detail=False) == ["model-b@1"]
    assert fs.cat_file("vvstore://model-b") == b"bytes of b"
