"""pytest fixtures for the local test servers.

Load with ``pytest_plugins = ["tests.servers.conftest_fixtures"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .hf_hub import FakeHub
from .http_server import FaultyHTTPServer
from .s3 import MotoS3

__all__ = ["fake_hub", "http_server", "moto_s3", "s3"]


@pytest.fixture
def http_server() -> Iterator[FaultyHTTPServer]:
    """A fresh, running ``FaultyHTTPServer`` with no files."""
    with FaultyHTTPServer() as server:
        yield server


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fresh, running ``FakeHub``, made huggingface_hub's default endpoint for the test.

    HF_HOME (and the hub cache, token and xet paths derived from it) point into ``tmp_path``,
    telemetry is off and tokens from the environment are hidden. huggingface_hub reads these
    at import, so its ``constants`` are patched too; the env vars serve subprocesses.
    """
    from huggingface_hub import HfFileSystem, constants

    home = tmp_path / "hf_home"
    with FakeHub() as hub:
        env = {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
               "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        for name, text in env.items():
            monkeypatch.setenv(name, text)
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_TOKEN_PATH"):
            monkeypatch.delenv(name, raising=False)
        template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        patches: dict[str, object] = {
            "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
            "HF_ASSETS_CACHE": str(home / "assets"), "HF_XET_CACHE": str(home / "xet"),
            "HF_TOKEN_PATH": str(home / "token"),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "HF_HUB_DISABLE_TELEMETRY": True, "ENDPOINT": hub.endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": template,
        }
        for name, value in patches.items():
            monkeypatch.setattr(constants, name, value, raising=False)
        HfFileSystem.clear_instance_cache()
        yield hub
        HfFileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server for the session; use ``s3`` in tests for a clean state."""
    with MotoS3() as server:
        yield server


@pytest.fixture
def s3(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """``moto_s3`` emptied, with its AWS env vars set and s3fs's instance cache cleared."""
    import s3fs

    moto_s3.reset()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield moto_s3
    s3fs.S3FileSystem.clear_instance_cache()
    moto_s3.stop_proxies()
