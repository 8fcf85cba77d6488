pytest_plugins = ["tests.servers.conftest_fixtures"]


# --- foundation fixtures: a private store, a project, the `vvstore` command -------------------

import logging  # noqa: E402  (below pytest_plugins, which must stay first)
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_vvstore_logger() -> Iterator[None]:
    """The CLI rewires the "vvstore" logger (own handler on a stream, no propagation); undo it
    after each test so caplog keeps working and no handler writes to a closed runner stream."""
    logger = logging.getLogger("vvstore")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def vv_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store directory (not yet created), made `$VVSTORE_HOME` for the test."""
    home = tmp_path / "store"
    monkeypatch.setenv("VVSTORE_HOME", str(home))
    monkeypatch.delenv("VVSTORE_FAILPOINTS", raising=False)
    return home


@pytest.fixture
def blob_store(vv_home: Path):
    """A created, empty `BlobStore` at `vv_home`."""
    from cas.blobs import BlobStore

    return BlobStore(vv_home)


@pytest.fixture
def vv_project(tmp_path: Path, vv_home: Path) -> Path:
    """An initialised project directory (`vvstore.yaml` with no models) using `vv_home`."""
    from cas.manager import DefaultModelManager

    project = tmp_path / "project"
    DefaultModelManager(project, vv_home).init()
    return project


@pytest.fixture
def vv_manager(vv_project: Path, vv_home: Path):
    """A `DefaultModelManager` on `vv_project` and `vv_home`."""
    from cas.manager import DefaultModelManager

    return DefaultModelManager(vv_project, vv_home)


@pytest.fixture
def vvstore_cmd() -> list[str]:
    """argv prefix that runs the real `vvstore` console script (or `python -m cli.main`)."""
    exe = shutil.which("vvstore", path=os.path.dirname(sys.executable)) or shutil.which("vvstore")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]
