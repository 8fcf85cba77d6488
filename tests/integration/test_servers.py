"""Self-tests of the local test servers, driven by the real clients vvstore uses."""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any, NamedTuple

import fsspec
import pytest

from tests.servers.hf_hub import FakeHub
from tests.servers.http_server import (
    FaultyHTTPServer,
    drop_after,
    ignore_range,
    slow,
    status,
    wrong_bytes,
)
from tests.servers.s3 import MotoS3

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Reply(NamedTuple):
    status: int
    headers: Message
    body: bytes


def open_url(url: str, method: str = "GET", range_: str | None = None) -> http.client.HTTPResponse:
    """One urllib request (no proxies); the caller closes the response."""
    req = urllib.request.Request(url, method=method)
    if range_:
        req.add_header("Range", range_)
    return _OPENER.open(req, timeout=10)


def fetch(url: str, method: str = "GET", range_: str | None = None) -> Reply:
    """One complete urllib request; HTTP errors are replies too."""
    try:
        with open_url(url, method, range_) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, err.headers, err.read())


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --- FaultyHTTPServer -----------------------------------------------------------------


@pytest.fixture
def http_fs() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("http", skip_instance_cache=True)


def test_fsspec_http_info_ranged_open_and_cat(http_server: FaultyHTTPServer, http_fs) -> None:
    http_server.files["/m/x.bin"] = PAYLOAD
    url = http_server.url("/m/x.bin")
    info = http_fs.info(url)
    assert info["size"] == len(PAYLOAD)
    assert info["ETag"] == f'"{hashlib.sha1(PAYLOAD).hexdigest()}"'
    with http_fs.open(url, "rb", block_size=1000) as f:
        f.seek(5000)
        assert f.read(100) == PAYLOAD[5000:5100]
    ranged = [r for r in http_server.requests if r[0] == "GET"]
    assert len(ranged) == 1 and str(ranged[0][2]).startswith("bytes=5000-")
    assert ranged[0][3] == 206
    assert http_fs.cat(url) == PAYLOAD
    assert http_fs.cat_file(url, start=10, end=20) == PAYLOAD[10:20]


def test_head_ranges_416_and_404(http_server: FaultyHTTPServer) -> None:
    http_server.files["/a"] = PAYLOAD
    head = fetch(http_server.url("/a"), "HEAD")
    assert head.status == 200 and head.headers["Accept-Ranges"] == "bytes"
    assert int(head.headers["Content-Length"]) == len(PAYLOAD) and head.body == b""
    part = fetch(http_server.url("/a"), range_="bytes=10-19")
    assert part.status == 206 and part.body == PAYLOAD[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(PAYLOAD)}"
    tail = fetch(http_server.url("/a"), range_="bytes=10000-")
    assert tail.status == 206 and tail.body == PAYLOAD[10000:]
    bad = fetch(http_server.url("/a"), range_=f"bytes={len(PAYLOAD)}-")
    assert bad.status == 416 and bad.headers["Content-Range"] == f"bytes */{len(PAYLOAD)}"
    assert fetch(http_server.url("/missing")).status == 404
    assert [r[3] for r in http_server.requests] == [200, 206, 206, 416, 404]
    assert http_server.bytes_served["/a"] == 10 + len(PAYLOAD) - 10000


def test_status_faults_are_consumed_in_order(http_server: FaultyHTTPServer) -> None:
    http_server.files["/f"] = b"ok"
    http_server.inject("/f", status(503), status(429, {"Retry-After": "2"}))
    assert fetch(http_server.url("/f")).status == 503
    limited = fetch(http_server.url("/f"), "HEAD")
    assert limited.status == 429 and limited.headers["Retry-After"] == "2"
    assert fetch(http_server.url("/f")).body == b"ok"
    http_server.inject("/f", status(500, methods=("GET",)))
    assert fetch(http_server.url("/f"), "HEAD").status == 200  # not for HEAD: still queued
    assert fetch(http_server.url("/f")).status == 500
    assert [r[3] for r in http_server.requests] == [503, 429, 200, 200, 500]


def test_drop_after_then_resume_counts_bytes(http_server: FaultyHTTPServer) -> None:
    http_server.files["/big"] = PAYLOAD
    http_server.inject("/big", drop_after(1000))
    assert fetch(http_server.url("/big"), "HEAD").status == 200  # body faults skip HEAD
    with open_url(http_server.url("/big")) as resp:
        with pytest.raises(http.client.IncompleteRead) as err:
            resp.read()
    got = err.value.partial
    assert got == PAYLOAD[:1000] and http_server.bytes_served["/big"] == 1000
    rest = fetch(http_server.url("/big"), range_=f"bytes={len(got)}-")
    assert rest.status == 206 and got + rest.body == PAYLOAD
    assert http_server.bytes_served["/big"] == len(PAYLOAD)


def test_ignore_range_and_wrong_bytes(http_server: FaultyHTTPServer) -> None:
    http_server.files["/w"] = PAYLOAD
    http_server.inject("/w", ignore_range(), wrong_bytes())
    full = fetch(http_server.url("/w"), range_="bytes=0-9")
    assert full.status == 200 and full.body == PAYLOAD
    bad = fetch(http_server.url("/w")).body
    assert len(bad) == len(PAYLOAD) and bad != PAYLOAD
    assert fetch(http_server.url("/w")).body == PAYLOAD


def test_slow_fault_paces_the_body(http_server: FaultyHTTPServer) -> None:
    http_server.files["/s"] = b"z" * 200
    http_server.inject("/s", slow(1000))
    start = time.monotonic()
    assert fetch(http_server.url("/s")).body == b"z" * 200
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    fetch(http_server.url("/s"))
    assert time.monotonic() - start < 0.2


def test_rate_limit_is_per_connection() -> None:
    with FaultyHTTPServer({"/r": PAYLOAD[:2000]}, rate_limit_bps=4000) as server:
        start = time.monotonic()
        threads = [threading.Thread(target=fetch, args=(server.url("/r"), "GET", r))
                   for r in ("bytes=0-999", "bytes=1000-1999")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        assert server.bytes_served["/r"] == 2000
    assert 0.25 <= elapsed < 0.45  # 2 x 1000 B at 4000 B/s each: in parallel, not 0.5 s


def test_no_range_server(http_fs) -> None:
    with FaultyHTTPServer({"/n": PAYLOAD}, no_range=True) as server:
        resp = fetch(server.url("/n"), range_="bytes=0-9")
        assert resp.status == 200 and "Accept-Ranges" not in resp.headers
        assert resp.body == PAYLOAD
        with pytest.raises(ValueError):
            with http_fs.open(server.url("/n"), "rb", block_size=100) as f:
                f.seek(5000)
                f.read(10)


# --- FakeHub ----------------------------------------------------------------------------


@pytest.fixture
def hub_repo(fake_hub: FakeHub) -> dict[str, Any]:
    """org/model: v1 (3 files, one LFS) then a second commit on main changing two of them."""
    v1 = {"config.json": b'{"v": 1}', "weights/model.bin": os.urandom(4096), "README.md": b"r1"}
    sha1 = fake_hub.commit("org/model", v1, message="v1")
    fake_hub.tag("org/model", "v1", sha1)
    v2 = {**v1, "config.json": b'{"v": 2}', "weights/model.bin": os.urandom(5000)}
    sha2 = fake_hub.commit("org/model", v2, message="v2")
    return {"v1": v1, "v2": v2, "sha1": sha1, "sha2": sha2}


def test_hf_hub_download_regular_and_lfs(fake_hub: FakeHub, hub_repo, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    kw: dict[str, Any] = {"endpoint": fake_hub.endpoint, "cache_dir": tmp_path, "token": False}
    cfg = hf_hub_download("org/model", "config.json", revision="v1", **kw)
    assert Path(cfg).read_bytes() == hub_repo["v1"]["config.json"]
    assert Path(cfg).resolve().name == git_blob_sha1(b'{"v": 1}')  # blob named by git sha1
    weights = hf_hub_download("org/model", "weights/model.bin", revision="main", **kw)
    data = hub_repo["v2"]["weights/model.bin"]
    assert Path(weights).read_bytes() == data
    assert Path(weights).resolve().name == hashlib.sha256(data).hexdigest()  # LFS: by sha256
    assert f"/snapshots/{hub_repo['sha2']}/" in weights


def test_model_info_files_metadata(fake_hub: FakeHub, hub_repo) -> None:
    from huggingface_hub import HfApi

    info = HfApi(endpoint=fake_hub.endpoint, token=False).model_info(
        "org/model", revision="v1", files_metadata=True)
    assert info.sha == hub_repo["sha1"] and info.id == "org/model"
    sib = {s.rfilename: s for s in info.siblings or []}
    assert sorted(sib) == ["README.md", "config.json", "weights/model.bin"]
    weights = hub_repo["v1"]["weights/model.bin"]
    lfs = sib["weights/model.bin"].lfs
    assert lfs is not None and lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert sib["weights/model.bin"].size == lfs.size == len(weights)
    assert sib["config.json"].lfs is None
    assert sib["config.json"].blob_id == git_blob_sha1(b'{"v": 1}')
    assert ("GET", "/api/models/org/model/revision/v1") in fake_hub.requests


@pytest.mark.parametrize("which", ["tag", "sha"])
def test_snapshot_download(fake_hub: FakeHub, hub_repo, tmp_path: Path, which: str) -> None:
    from huggingface_hub import snapshot_download

    revision = "v1" if which == "tag" else hub_repo["sha1"]
    folder = Path(snapshot_download("org/model", revision=revision, endpoint=fake_hub.endpoint,
                                    cache_dir=tmp_path, token=False))
    assert folder.name == hub_repo["sha1"]
    got = {p.relative_to(folder).as_posix(): p.read_bytes()
           for p in folder.rglob("*") if p.is_file()}
    assert got == hub_repo["v1"]


def test_hf_filesystem_ls_info_cat_open(fake_hub: FakeHub, hub_repo, tmp_path: Path) -> None:
    from huggingface_hub import HfFileSystem

    sha, v1 = hub_repo["sha1"], hub_repo["v1"]
    fs = HfFileSystem(endpoint=fake_hub.endpoint, token=False)
    root = f"org/model@{sha}"
    names = sorted(map(str, fs.ls(root, detail=False)))
    assert names == [f"{root}/README.md", f"{root}/config.json", f"{root}/weights"]
    info = fs.info(f"{root}/weights/model.bin")
    assert info["size"] == 4096 and info["type"] == "file"
    assert fs.cat(f"{root}/config.json") == v1["config.json"]
    with fs.open(f"{root}/weights/model.bin", "rb", block_size=512) as f:
        f.seek(1000)
        assert f.read(100) == v1["weights/model.bin"][1000:1100]
    fs.get_file(f"{root}/weights/model.bin", str(tmp_path / "w.bin"))
    assert (tmp_path / "w.bin").read_bytes() == v1["weights/model.bin"]

    hf = fsspec.filesystem("hf", endpoint=fake_hub.endpoint, token=False)
    detail = hf.info(f"hf://org/model@{sha}/weights/model.bin", expand_info=True)
    assert detail["lfs"]["sha256"] == hashlib.sha256(v1["weights/model.bin"]).hexdigest()
    assert detail["last_commit"].oid == sha
    assert hf.cat("hf://org/model@v1/README.md") == b"r1"
    assert hf.cat("hf://org/model/config.json") == hub_repo["v2"]["config.json"]


def test_tree_pagination_and_paths_info(fake_hub: FakeHub, hub_repo) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    fake_hub.tree_page_size = 2
    api = HfApi(endpoint=fake_hub.endpoint, token=False)
    tree = list(api.list_repo_tree("org/model", recursive=True, revision="v1"))
    assert sorted(e.path for e in tree) == ["README.md", "config.json", "weights",
                                            "weights/model.bin"]
    assert sum(1 for m, p in fake_hub.requests if "/tree/" in p) == 2
    found = api.get_paths_info("org/model", ["weights", "config.json", "nope"], revision="v1")
    assert [type(e) for e in found] == [RepoFolder, RepoFile]


def test_not_found_errors_map_to_hf_exceptions(fake_hub: FakeHub, hub_repo, tmp_path) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kw: dict[str, Any] = {"endpoint": fake_hub.endpoint, "cache_dir": tmp_path, "token": False}
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/model", "nope.bin", **kw)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/model", "config.json", revision="nope", **kw)
    api = HfApi(endpoint=fake_hub.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/model", revision="nope")


def test_fail_next_and_default_endpoint(fake_hub: FakeHub, hub_repo) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=False)  # the fixture made the fake hub the default endpoint
    fake_hub.fail_next("/api/models/org/model", 500)
    with pytest.raises(HfHubHTTPError) as err:
        api.model_info("org/model")
    assert err.value.response.status_code == 500
    assert api.model_info("org/model").sha == hub_repo["sha2"]
    path = hf_hub_download("org/model", "README.md", token=False)  # cache under HF_HOME
    assert path.startswith(os.environ["HF_HOME"])


# --- MotoS3 -----------------------------------------------------------------------------


def test_s3fs_put_get_and_create_mode(s3: MotoS3, tmp_path: Path) -> None:
    import s3fs

    s3.client().create_bucket(Bucket="vv-bucket")
    fs = s3fs.S3FileSystem(**s3.storage_options())
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    fs.put_file(str(src), "vv-bucket/blobs/a.bin")
    fs.get_file("vv-bucket/blobs/a.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == PAYLOAD
    with pytest.raises(FileExistsError):
        fs.put_file(str(src), "vv-bucket/blobs/a.bin", mode="create")
    fs.put_file(str(src), "vv-bucket/blobs/b.bin", mode="create")
    assert s3fs.S3FileSystem().cat("vv-bucket/blobs/b.bin") == PAYLOAD  # env from fixture
    s3.reset()
    assert s3.client().list_buckets()["Buckets"] == []


def test_subprocess_reaches_moto_with_env_only(s3: MotoS3) -> None:
    s3.client().create_bucket(Bucket="vv-sub")
    s3.client().put_object(Bucket="vv-sub", Key="k", Body=b"hello")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | s3.env()
    code = "import s3fs; print(s3fs.S3FileSystem().cat('vv-sub/k').decode())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "hello"


def test_delay_proxy_counts_and_delays(s3: MotoS3) -> None:
    import s3fs

    s3.client().create_bucket(Bucket="vv-slow")
    url = s3.delay_proxy(0.05)
    client = s3.client(endpoint_url=url)
    big = os.urandom(2 * 1024 * 1024)  # large enough for boto3's Expect: 100-continue
    client.put_object(Bucket="vv-slow", Key="big", Body=big)
    assert client.get_object(Bucket="vv-slow", Key="big")["Body"].read() == big
    fs = s3fs.S3FileSystem(**s3.storage_options(endpoint_url=url), skip_instance_cache=True)
    start, before = time.monotonic(), s3.request_count
    assert fs.cat_file("vv-slow/big", start=10, end=20) == big[10:20]
    assert fs.info("vv-slow/big")["size"] == len(big)
    made = s3.request_count - before
    assert made >= 2 and time.monotonic() - start >= 0.05 * made
    assert s3.request_count >= 4 and ("PUT", "/vv-slow/big") in s3.proxies[0].requests
