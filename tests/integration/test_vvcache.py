"""`vvcache::` over real sources: a content-addressed cache layer under any fsspec URL."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import fsspec
import pytest

import cas
from cas.vvcache import VVCacheFileSystem
from tests.servers.http_server import FaultyHTTPServer
from tests.servers.s3 import MotoS3

BUCKET = "cachebucket"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("VVSTORE_HOME", str(path))
    VVCacheFileSystem.clear_instance_cache()
    yield path
    VVCacheFileSystem.clear_instance_cache()


def object_gets(proxy_requests: list[tuple[str, str]], key: str) -> int:
    return sum(
        1 for method, path in proxy_requests if method == "GET" and path.split("?")[0].endswith(key)
    )


def test_s3_object_is_read_once_for_two_opens_and_again_after_it_changes(
    s3: MotoS3, store: Path
) -> None:
    """The remote's bytes cross the wire once for two opens (counted at a proxy in front of
    moto); a changed object (new ETag) is fetched again; both versions are blobs."""
    endpoint = s3.delay_proxy(0.0)
    proxy = s3.proxies[-1]
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    first, second = os.urandom(300_000), os.urandom(300_000)
    client.put_object(Bucket=BUCKET, Key="m.bin", Body=first)
    url = f"vvcache::s3://{BUCKET}/m.bin"
    opts = {"s3": {**s3.storage_options(endpoint)}}
    for _ in range(2):
        with fsspec.open(url, **opts) as f:
            assert f.read() == first
    assert object_gets(proxy.requests, "/m.bin") == 1
    client.put_object(Bucket=BUCKET, Key="m.bin", Body=second)
    with fsspec.open(url, **opts) as f:
        assert f.read() == second
    assert object_gets(proxy.requests, "/m.bin") == 2
    blobs = {p.name for p in (store / "blobs" / "blake3").rglob("*") if p.is_file()}
    for data in (first, second):
        assert blake3.blake3(data).hexdigest()[2:] in blobs


def test_http_cached_copy_is_the_blob_and_survives_a_dead_source(store: Path) -> None:
    """open_local gives the blob itself; once cached, an unchanged object is served from the
    store with only a metadata request."""
    data = os.urandom(100_000)
    with FaultyHTTPServer() as srv:
        srv.files["/w.bin"] = data
        url = "vvcache::" + srv.url("/w.bin")
        local = fsspec.open_local(url)
        assert Path(local).read_bytes() == data
        assert Path(local).is_relative_to(store / "blobs")
        srv.reset_counters()
        with fsspec.open(url) as f:
            assert f.read() == data
        assert srv.bytes_served["/w.bin"] == 0
        assert [m for m, *_ in srv.requests if m == "GET"] == []


def test_same_bytes_under_two_urls_are_stored_once(store: Path) -> None:
    data = os.urandom(50_000)
    with FaultyHTTPServer() as srv:
        srv.files["/a.bin"] = data
        srv.files["/b.bin"] = data
        for name in ("/a.bin", "/b.bin"):
            with fsspec.open("vvcache::" + srv.url(name)) as f:
                assert f.read() == data
    blobs = [p for p in (store / "blobs" / "blake3").rglob("*") if p.is_file()]
    assert len(blobs) == 1


def test_writes_are_refused(store: Path) -> None:
    with FaultyHTTPServer() as srv:
        srv.files["/a.bin"] = b"x"
        with pytest.raises(PermissionError, match="read-only"):
            fsspec.open("vvcache::" + srv.url("/a.bin"), "wb").open()


def test_cas_open_caches_a_url_and_cas_path_resolves_a_ref(store: Path, tmp_path: Path) -> None:
    data = os.urandom(20_000)
    with FaultyHTTPServer() as srv:
        srv.files["/c.bin"] = data
        with cas.open(srv.url("/c.bin")) as f:
            assert f.read() == data
    project = tmp_path / "proj"
    project.mkdir()
    (project / "m.bin").write_bytes(data)
    manager = cas.DefaultModelManager(project, store)
    manager.init()
    manager.add([str(project / "m.bin")], name="m")
    assert cas.path("m", project=project).read_bytes() == data
    with cas.open("m@1", project=project) as f:
        assert f.read() == data
    with pytest.raises(PermissionError):
        cas.open("m", mode="wb", project=project)
