"""Fetching from S3 (moto's server on 127.0.0.1) through s3fs: the CLI with
`AWS_ENDPOINT_URL_S3`, and the Python API with the manifest's `storage:` options."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from cas.blobs import BlobStore
from cas.digest import hash_bytes
from cas.download import FetchRequest, FetchResult, ModelDownloader
from cas.errors import AllSourcesFailedError, IntegrityError, ManifestError
from cas.manager import DefaultModelManager
from cas.manifest import ModelManifest
from cas.retry import RetryPolicy
from tests.helpers import assert_blobs_sound, blob_files, cli_env, has_blob, payload, tmp_leftovers
from tests.servers.s3 import MotoS3

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

KiB, MiB = 1024, 1024 * 1024
BUCKET = "models"


@pytest.fixture
def bucket(s3: MotoS3) -> Any:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def vv(vvstore_cmd: list[str], vv_project: Path, vv_home: Path, s3: MotoS3):
    """`vvstore -C project ...` in a subprocess whose environment points boto3 at moto."""

    def run(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = cli_env(store or vv_home, **s3.env())
        return subprocess.run(
            [*vvstore_cmd, "-C", str(vv_project), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


# --- CLI --------------------------------------------------------------------------------------


def test_cli_add_s3_url_then_fetch_into_a_fresh_store(
    bucket: Any, vv, vv_project: Path, vv_home: Path, tmp_path: Path
) -> None:
    data = payload(3 * MiB, 1)
    bucket.put_object(Bucket=BUCKET, Key="acme/tiny.onnx", Body=data)
    r = vv("add", "s3://models/acme/tiny.onnx", "--name", "x")
    assert r.returncode == 0, r.stderr
    [entry] = yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"]
    assert entry["sources"] == ["s3://models/acme/tiny.onnx"]
    assert entry["digest"] == str(hash_bytes(data)) and entry["size"] == len(data)
    assert has_blob(vv_home, data)

    fresh = tmp_path / "fresh"
    r = vv("--json", "fetch", store=fresh)
    assert r.returncode == 0, r.stderr
    [f] = json.loads(r.stdout)["fetched"]
    assert f["digest"] == str(hash_bytes(data)) and f["source"] == "s3://models/acme/tiny.onnx"
    assert has_blob(fresh, data)
    assert_blobs_sound(fresh)


def test_cli_add_s3_prefix_as_a_tree(bucket: Any, vv, vv_project: Path, tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}', "weights/model.bin": payload(200 * KiB, 2)}
    for rel, body in files.items():
        bucket.put_object(Bucket=BUCKET, Key=f"snap/{rel}", Body=body)
    r = vv("--json", "add", "s3://models/snap", "--name", "snap")
    assert r.returncode == 0, r.stderr
    [entry] = yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"]
    assert entry["kind"] == "tree"
    fresh = tmp_path / "fresh"
    r = vv("--json", "fetch", store=fresh)
    assert r.returncode == 0, r.stderr
    for body in files.values():
        assert has_blob(fresh, body)
    show = vv("--json", "show", "snap", store=fresh)
    assert show.returncode == 0, show.stderr
    doc = json.loads(show.stdout)
    assert doc["digest"] == entry["digest"]
    assert {f["path"]: f["digest"] for f in doc["files"]} == {
        k: str(hash_bytes(v)) for k, v in files.items()
    }


def test_cli_missing_key_exit_6_with_the_reason(bucket: Any, vv, vv_project: Path) -> None:
    (vv_project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": "gone", "version": "1", "sources": ["s3://models/no/such/key.bin"]}
                ]
            }
        )
    )
    r = vv("fetch")
    assert r.returncode == 6, r.stderr
    assert "s3://models/no/such/key.bin" in r.stderr
    assert "FileNotFoundError" in r.stderr or "NoSuchKey" in r.stderr or "Not Found" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_add_missing_key_exit_6(bucket: Any, vv, vv_project: Path) -> None:
    r = vv("add", "s3://models/nope.bin", "--name", "nope")
    assert r.returncode == 6, r.stderr
    assert "s3://models/nope.bin" in r.stderr
    assert yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"] == []


# --- Python API with the manifest's storage options --------------------------------------------


def test_api_fetch_with_manifest_endpoint(
    bucket: Any, s3: MotoS3, vv_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only the manifest knows where S3 is
    data = payload(2 * MiB, 3)
    bucket.put_object(Bucket=BUCKET, Key="m.bin", Body=data)
    manifest_path = vv_project / "vvstore.yaml"
    manifest_path.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "m",
                        "version": "1",
                        "sources": ["s3://models/m.bin"],
                        "digest": str(hash_bytes(data)),
                        "size": len(data),
                    }
                ],
                "storage": {
                    "s3": {
                        "endpoint_url": s3.endpoint_url,
                        "client_kwargs": {"region_name": s3.region},
                    }
                },
            }
        )
    )
    manifest = ModelManifest.load_manifest(manifest_path)
    assert manifest.data.storage["s3"]["endpoint_url"] == s3.endpoint_url
    store = tmp_path / "api-store"
    mgr = DefaultModelManager(vv_project, store)
    report = mgr.fetch()
    assert report.errors == [], report.errors
    [(ref, res)] = report.fetched
    assert ref == "m@1" and res.digest == hash_bytes(data) and res.source == "s3://models/m.bin"
    assert mgr.path("m").read_bytes() == data
    assert mgr.fetch().present == ["m@1"]  # a second fetch is a no-op


def test_api_fetch_records_the_digest_it_computed(
    bucket: Any, s3: MotoS3, vv_project: Path
) -> None:
    data = payload(100 * KiB, 4)
    bucket.put_object(Bucket=BUCKET, Key="nodigest.bin", Body=data)
    (vv_project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [{"name": "n", "version": "1", "sources": ["s3://models/nodigest.bin"]}],
                "storage": {"s3": {"endpoint_url": s3.endpoint_url}},
            }
        )
    )
    report = DefaultModelManager(vv_project).fetch()
    assert report.errors == []
    entry = ModelManifest.load_manifest(vv_project / "vvstore.yaml").get_model_info("n")
    assert entry.digest == str(hash_bytes(data)) and entry.size == len(data)


def test_api_missing_key_lists_the_reason(bucket: Any, s3: MotoS3, vv_project: Path) -> None:
    (vv_project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [{"name": "g", "version": "1", "sources": ["s3://models/missing.bin"]}],
                "storage": {"s3": {"endpoint_url": s3.endpoint_url}},
            }
        )
    )
    report = DefaultModelManager(vv_project).fetch()
    [(ref, err)] = report.errors
    assert ref == "g@1" and isinstance(err, AllSourcesFailedError) and err.exit_code == 6
    [(url, reason)] = err.failures
    assert url == "s3://models/missing.bin" and reason


def test_manifest_refuses_credentials_in_storage_options(vv_project: Path) -> None:
    (vv_project / "vvstore.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [],
                "storage": {"s3": {"endpoint_url": "http://127.0.0.1:1", "secret": "hunter2"}},
            }
        )
    )
    with pytest.raises(ManifestError) as e:
        ModelManifest.load_manifest(vv_project / "vvstore.yaml")
    assert "$.storage.s3.secret" in str(e.value) and "hunter2" not in str(e.value)


def test_large_s3_object_is_one_streamed_get(bucket: Any, s3: MotoS3, tmp_path: Path) -> None:
    """S3 objects stream in one GET, never a request per block or per part: each request costs
    a round trip on S3 and, on moto, a copy of the whole object (bench/fetch.py measured 68x
    s3fs's time for 1 GiB fetched in 4 MiB ranged reads)."""
    data = payload(2 * MiB, 5)
    bucket.put_object(Bucket=BUCKET, Key="big.bin", Body=data)
    counting = s3.delay_proxy(0.0)  # a pass-through proxy that counts requests
    store = BlobStore(tmp_path / "store")
    dl = ModelDownloader(
        store,
        options={"s3": s3.storage_options(counting) | {"default_block_size": 256 * KiB}},
        jobs=4,
        part_size=256 * KiB,
        parallel_min=512 * KiB,
        retry=RetryPolicy(base=0.01),
    )
    res = dl.download(FetchRequest("big@1", ["s3://models/big.bin"], hash_bytes(data), len(data)))
    assert store.path(res.digest).read_bytes() == data
    gets = [p for m, p in s3.proxies[-1].requests if m == "GET" and "big.bin" in p]
    assert len(gets) == 1


def test_pinned_small_files_cost_one_get_each(bucket: Any, s3: MotoS3, tmp_path: Path) -> None:
    """Files whose digest and size are pinned need no HEAD: one GET each, checked against
    both. A second round trip per file would halve throughput over a WAN (bench/fetch.py)."""
    files = {f"small/{i}.bin": payload(20 * KiB, 30 + i) for i in range(6)}
    for key, body in files.items():
        bucket.put_object(Bucket=BUCKET, Key=key, Body=body)
    counting = s3.delay_proxy(0.0)
    store = BlobStore(tmp_path / "store")
    dl = ModelDownloader(store, options={"s3": s3.storage_options(counting)}, jobs=3)
    results = dl.download_batch(
        FetchRequest(k, [f"s3://{BUCKET}/{k}"], hash_bytes(b), len(b)) for k, b in files.items()
    )
    assert all(isinstance(r, FetchResult) and r.fetched for r in results), results
    assert sorted(m for m, p in s3.proxies[-1].requests if "/small/" in p) == ["GET"] * 6
    assert all(has_blob(store, b) for b in files.values())
    assert_blobs_sound(store)


def test_pinned_file_gone_from_s3_fails_cleanly(bucket: Any, s3: MotoS3, tmp_path: Path) -> None:
    """Without a HEAD the missing key surfaces on the GET: same error, named URL, no debris."""
    data = payload(10 * KiB, 40)
    store = BlobStore(tmp_path / "store")
    dl = ModelDownloader(store, options={"s3": s3.storage_options()}, retry=RetryPolicy(base=0.01))
    with pytest.raises(AllSourcesFailedError) as e:
        dl.download(FetchRequest("gone@1", [f"s3://{BUCKET}/gone.bin"], hash_bytes(data), 10240))
    assert f"s3://{BUCKET}/gone.bin" in str(e.value)
    assert tmp_leftovers(store) == []
    assert blob_files(store) == []


def test_cli_tree_whose_source_changed_exit_5(
    bucket: Any, vv, vv_project: Path, tmp_path: Path
) -> None:
    """Every source of a tree serves other bytes than were added: an integrity failure (5),
    not a source failure (6); and no wrong tree is published under the recorded digest."""
    bucket.put_object(Bucket=BUCKET, Key="snap2/a.bin", Body=payload(10 * KiB, 6))
    r = vv("add", "s3://models/snap2", "--name", "snap2")
    assert r.returncode == 0, r.stderr
    recorded = yaml.safe_load((vv_project / "vvstore.yaml").read_text())["models"][0]["digest"]
    bucket.put_object(Bucket=BUCKET, Key="snap2/a.bin", Body=payload(10 * KiB, 7))
    fresh = tmp_path / "fresh"
    r = vv("fetch", store=fresh)
    assert r.returncode == 5, r.stderr
    h = recorded.split(":", 1)[1]
    assert not (fresh / "blobs" / "blake3" / h[:2] / h[2:]).exists()
    assert_blobs_sound(fresh)


def test_interrupted_s3_download_resumes_with_a_ranged_get(
    bucket: Any, s3: MotoS3, tmp_path: Path
) -> None:
    """A download cut after its first chunk leaves a partial; the next one asks S3 only for
    the rest (a ranged GET from the partial's end) and the blob verifies."""
    data = payload(9 * MiB, 11)
    bucket.put_object(Bucket=BUCKET, Key="resume.bin", Body=data)
    store = BlobStore(tmp_path / "store")
    request = FetchRequest("r@1", ["s3://models/resume.bin"], hash_bytes(data), len(data))

    class Cut(Exception):
        pass

    def cut_after_first_chunk(n: int) -> None:
        raise Cut()

    options = {"s3": s3.storage_options()}
    with pytest.raises(AllSourcesFailedError):  # reported as the source failing
        ModelDownloader(store, options=options, progress=cut_after_first_chunk).download(request)
    assert not store.has(hash_bytes(data))
    [partial] = ModelDownloader(store).partials()
    assert 0 < partial["bytes"] < len(data)
    res = ModelDownloader(store, options=options).download(request)
    assert res.resumed_from == partial["bytes"]
    assert store.path(res.digest).read_bytes() == data


# --- small pinned files on the event loop (cas/smallfiles.py) ---------------------------------


@pytest.fixture
def ordinary(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What went the ordinary (threaded, per-file) way: `ModelDownloader.download` calls."""
    calls: list[str] = []
    real = ModelDownloader.download

    def spy(self: ModelDownloader, request: FetchRequest) -> Any:
        calls.append(request.what)
        return real(self, request)

    monkeypatch.setattr(ModelDownloader, "download", spy)
    return calls


def small_batch(bucket: Any, prefix: str, n: int, seed: int) -> dict[str, bytes]:
    files = {f"{prefix}/{i}.bin": payload(8 * KiB + i, seed + i) for i in range(n)}
    for key, body in files.items():
        bucket.put_object(Bucket=BUCKET, Key=key, Body=body)
    return files


def pinned(files: dict[str, bytes]) -> list[FetchRequest]:
    return [
        FetchRequest(k, [f"s3://{BUCKET}/{k}"], hash_bytes(b), len(b)) for k, b in files.items()
    ]


def test_small_pinned_files_are_fetched_on_the_event_loop(
    bucket: Any, s3: MotoS3, tmp_path: Path, ordinary: list[str]
) -> None:
    files = small_batch(bucket, "loop", 8, 50)
    counting = s3.delay_proxy(0.0)
    store = BlobStore(tmp_path / "store")
    got: list[int] = []
    dl = ModelDownloader(store, options={"s3": s3.storage_options(counting)}, progress=got.append)
    results = dl.download_batch(pinned(files))
    assert ordinary == []  # not one went through a worker thread
    assert [r.request.what for r in results] == list(files)  # in the order asked
    assert all(isinstance(r, FetchResult) and r.fetched and r.new for r in results)
    assert sorted(m for m, p in s3.proxies[-1].requests if "/loop/" in p) == ["GET"] * 8
    assert sum(got) == sum(len(b) for b in files.values())
    assert all(has_blob(store, b) for b in files.values())
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []
    # a second batch finds them present and sends nothing
    before = s3.proxies[-1].request_count
    again = dl.download_batch(pinned(files))
    assert all(isinstance(r, FetchResult) and not r.fetched for r in again)
    assert s3.proxies[-1].request_count == before


def test_what_fails_on_the_event_loop_is_settled_the_ordinary_way(
    bucket: Any, s3: MotoS3, tmp_path: Path, ordinary: list[str]
) -> None:
    """Wrong bytes and a missing key leave the fast path to the per-file one, which reports
    them as always (5 with a quarantine note naming the source; 6 naming the URL)."""
    files = small_batch(bucket, "mixed", 4, 60)
    wrong_key, gone_key = "mixed/0.bin", "mixed/gone.bin"
    bucket.put_object(Bucket=BUCKET, Key=wrong_key, Body=payload(len(files[wrong_key]), 99))
    requests = pinned(files) + [
        FetchRequest(gone_key, [f"s3://{BUCKET}/{gone_key}"], hash_bytes(b"x" * 10), 10)
    ]
    store = BlobStore(tmp_path / "store")
    dl = ModelDownloader(store, options={"s3": s3.storage_options()}, retry=RetryPolicy(base=0.01))
    results = dl.download_batch(requests)
    assert sorted(ordinary) == [wrong_key, gone_key]
    by_what = {r.request.what if isinstance(r, FetchResult) else None: r for r in results}
    assert {k for k in by_what if k} == set(files) - {wrong_key}
    wrong, gone = results[0], results[-1]
    assert isinstance(wrong, IntegrityError) and f"s3://{BUCKET}/{wrong_key}" in str(wrong)
    assert isinstance(gone, AllSourcesFailedError) and f"s3://{BUCKET}/{gone_key}" in str(gone)
    assert not has_blob(store, payload(len(files[wrong_key]), 99))
    assert any(p.is_file() for p in (store.root / "quarantine").rglob("*"))
    assert_blobs_sound(store)


def test_a_digest_another_process_is_fetching_is_waited_for(
    bucket: Any, s3: MotoS3, tmp_path: Path, ordinary: list[str]
) -> None:
    """The per-digest lock holds on the event-loop path too: a digest locked elsewhere is
    left to the ordinary path, which waits for the lock and then fetches or finds it."""
    from filelock import FileLock

    files = small_batch(bucket, "locked", 3, 70)
    store = BlobStore(tmp_path / "store")
    first = next(iter(files))
    other = FileLock(str(store.layout.digest_lock(hash_bytes(files[first]))), thread_local=False)
    other.acquire()
    release = threading.Timer(0.5, other.release)
    release.start()
    try:
        results = ModelDownloader(store, options={"s3": s3.storage_options()}).download_batch(
            pinned(files)
        )
    finally:
        release.join()
    assert ordinary == [first]
    assert all(isinstance(r, FetchResult) and r.fetched for r in results)
    assert all(has_blob(store, b) for b in files.values())


def test_only_small_files_are_held_in_memory_whole(
    bucket: Any, s3: MotoS3, tmp_path: Path, ordinary: list[str]
) -> None:
    from cas.smallfiles import SMALL

    files = {"sizes/under.bin": payload(SMALL - 1, 80), "sizes/at.bin": payload(SMALL, 81)}
    for key, body in files.items():
        bucket.put_object(Bucket=BUCKET, Key=key, Body=body)
    store = BlobStore(tmp_path / "store")
    results = ModelDownloader(store, options={"s3": s3.storage_options()}).download_batch(
        pinned(files)
    )
    assert ordinary == ["sizes/at.bin"]  # streamed to disk by a worker, not held whole
    assert all(isinstance(r, FetchResult) and r.fetched for r in results)
    assert all(has_blob(store, b) for b in files.values())
