"""fsspec's own conformance suite (`fsspec.tests.abstract`) run against `vvstore://`.

`vvstore://` is read-only, so only the suite whose filesystem under test is the *source* applies:
`AbstractGetTests` (vvstore -> local). Its scenario fixtures normally create files on the
filesystem under test (`makedirs`/`touch`/`pipe`) and `rm` them afterwards; here each scenario is
a local directory tree added once with the real `vvstore add` command into a project, and the
fixture returns the model's path. The tree models are immutable, so the one project serves every
test of the module; each test gets a fresh filesystem instance.

Suites that write to the filesystem under test cannot apply to a read-only filesystem, and are
not run here:

* `AbstractOpenTests.test_open_exclusive` writes with "wb" then expects "xb" to raise
  FileExistsError;
* `AbstractPipeTests` pipes bytes in; `AbstractPutTests` puts local files in;
* `AbstractCopyTests` copies within the filesystem under test (its target is on that filesystem).

tests/test_fs.py covers what those suites would check on the read side (open "rb", seek and ranged
reads, cat) and asserts that each write they would make is refused with PermissionError.

`test_get_directory_recursive` makes its source with `fs.mkdir` + `fs.touch`; it is overridden
below with the same assertions on a model `src` holding the same single empty `file`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from hashlib import md5
from pathlib import Path

import pytest
from fsspec.tests.abstract import AbstractFixtures, AbstractGetTests

from cas.fs import VVStoreFileSystem

pytestmark = pytest.mark.timeout(120)

# model name -> files (relative path -> bytes) of the local tree `vvstore add` stores
SCENARIOS: dict[str, dict[str, bytes]] = {
    # BaseAbstractFixtures._bulk_operations_scenario_0
    "bulk0": {"file1": b"", "file2": b"", "subdir/subfile1": b"", "subdir/subfile2": b"",
              "subdir/nesteddir/nestedfile": b""},
    # _glob_edge_cases_files
    "globedge": {"file1": b"", "file2": b"",
                 **{f"subdir{i}/{f}": b"" for i in range(2)
                    for f in ("subfile1", "subfile2", "nesteddir/nestedfile")}},
    # _dir_and_file_with_same_name_prefix
    "prefix": {"subdir.txt": b"", "subdir/subfile.txt": b""},
    # _10_files_with_hashed_names
    "hashed10": {f"{md5(str(i).encode()).hexdigest()}.txt": str(i).encode() for i in range(10)},
    # test_get_directory_recursive: fs.mkdir(src); fs.touch(src/file)
    "src": {"file": b""},
}


def _vvstore(cmd: list[str], *args: str, cwd: Path, home: Path) -> None:
    env = {**os.environ, "VVSTORE_HOME": str(home)}
    env.pop("VVSTORE_FAILPOINTS", None)
    proc = subprocess.run([*cmd, "-q", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def suite_project(tmp_path_factory: pytest.TempPathFactory,
                  vvstore_cmd: list[str]) -> tuple[Path, Path]:
    """(project, store): every scenario added as a tree model by the `vvstore` command."""
    base = tmp_path_factory.mktemp("fsspec_suite")
    home, project, trees = base / "store", base / "project", base / "trees"
    project.mkdir()
    for name, files in SCENARIOS.items():
        for rel, data in files.items():
            p = trees / name / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    _vvstore(vvstore_cmd, "init", cwd=project, home=home)
    _vvstore(vvstore_cmd, "add", *(str(trees / n) for n in SCENARIOS), cwd=project, home=home)
    return project, home


@pytest.fixture(scope="module")
def vvstore_cmd() -> list[str]:  # module scope (the conftest one is per test)
    import shutil
    import sys

    exe = shutil.which("vvstore", path=os.path.dirname(sys.executable)) or shutil.which("vvstore")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


class VVStoreFixtures(AbstractFixtures):
    """Plugs `vvstore://` into fsspec's suite; `prefix` is how a model path is spelled."""

    prefix: Callable[[str], str] = staticmethod(lambda name: name)

    @pytest.fixture
    def fs(self, suite_project: tuple[Path, Path]) -> Iterator[VVStoreFileSystem]:
        project, home = suite_project
        VVStoreFileSystem.clear_instance_cache()
        yield VVStoreFileSystem(project=str(project), store=str(home))
        VVStoreFileSystem.clear_instance_cache()

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(p.rstrip("/") for p in parts)

    @pytest.fixture
    def fs_path(self) -> str:
        return self.prefix("")

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False  # a tree model lists files; a directory exists only through its files

    # the scenarios are models added once, never created or removed through the filesystem

    @pytest.fixture
    def fs_bulk_operations_scenario_0(self) -> str:
        return self.prefix("bulk0")

    @pytest.fixture
    def fs_glob_edge_cases_files(self) -> str:
        return self.prefix("globedge")

    @pytest.fixture
    def fs_dir_and_file_with_same_name_prefix(self) -> str:
        return self.prefix("prefix")

    @pytest.fixture
    def fs_10_files_with_hashed_names(self) -> str:
        return self.prefix("hashed10")


class _GetTests(VVStoreFixtures, AbstractGetTests):
    def test_get_directory_recursive(self, fs, fs_join, fs_path, local_fs, local_join,
                                     local_target):
        """Upstream's body after its `fs.mkdir(src)` + `fs.touch(src/file)`: `src` is a model.

        The one change: the directory's own name is `src`, or `src@1` when spelled with a version.
        """
        src = self.prefix("src")
        base = fs._strip_protocol(src)  # "src" or "src@1": a top-level directory

        # get without slash
        assert not local_fs.exists(target := local_target)
        for loop in range(2):
            fs.get(src, target, recursive=True)
            assert local_fs.isdir(target)
            if loop == 0:
                assert local_fs.isfile(local_join(target, "file"))
                assert not local_fs.exists(local_join(target, base))
            else:
                assert local_fs.isfile(local_join(target, "file"))
                assert local_fs.isdir(local_join(target, base))
                assert local_fs.isfile(local_join(target, base, "file"))

        local_fs.rm(target, recursive=True)

        # get with slash
        assert not local_fs.exists(target)
        for _ in range(2):
            fs.get(src + "/", target, recursive=True)
            assert local_fs.isdir(target)
            assert local_fs.isfile(local_join(target, "file"))
            assert not local_fs.exists(local_join(target, base))

    def test_scenarios_are_the_upstream_ones(self, fs):
        """The models hold exactly what upstream's scenario builders would have created."""
        for name, files in SCENARIOS.items():
            root = self.prefix(name)
            found = fs.find(root)
            rel = sorted(p[len(fs._strip_protocol(root)) + 1:] for p in found)
            assert rel == sorted(files)
            for r, data in files.items():
                assert fs.cat_file(f"{root}/{r}") == data


class TestGetByName(_GetTests):
    """Model paths spelled `NAME/...` (the highest version), no protocol."""

    prefix = staticmethod(lambda name: name)


class TestGetByURLAndVersion(_GetTests):
    """Model paths spelled `vvstore://NAME@1/...`."""

    prefix = staticmethod(lambda name: f"vvstore://{name}@1" if name else "vvstore://")
