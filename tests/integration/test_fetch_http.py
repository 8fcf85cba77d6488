"""Fetching over HTTP from a real local server that injects faults (tests/servers/http_server.py).

Resume is proven by the server's own count of body bytes served.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from cas.blobs import BlobStore
from cas.digest import hash_bytes
from cas.download import FetchRequest, FetchResult, ModelDownloader
from cas.errors import AllSourcesFailedError, IntegrityError
from cas.retry import RetryPolicy
from tests.helpers import assert_blobs_sound, blob_files, payload, tmp_leftovers
from tests.servers.http_server import (
    FaultyHTTPServer,
    drop_after,
    ignore_range,
    slow,
    status,
    wrong_bytes,
)

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

KiB, MiB = 1024, 1024 * 1024


def dead_url(path: str = "/m.bin") -> str:
    """A loopback URL on a port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def served(srv: FaultyHTTPServer, path: str, expect: int) -> int:
    """bytes_served for path once the server threads have counted what they sent."""
    deadline = time.monotonic() + 3
    while srv.bytes_served[path] < expect and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    return srv.bytes_served[path]


def methods(srv: FaultyHTTPServer, path: str) -> list[str]:
    return [method for method, p, _, _ in srv.requests if p == path]


def gets(srv: FaultyHTTPServer, path: str) -> list[tuple[str | None, int]]:
    return [(rng, code) for method, p, rng, code in srv.requests if method == "GET" and p == path]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def dl(store: BlobStore, sleeps: list[float]) -> ModelDownloader:
    def sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(min(s, 0.05))

    return ModelDownloader(
        store, retry=RetryPolicy(attempts=5, base=0.01, cap=0.05, jitter=0.0), sleep=sleep
    )


def req(data: bytes, *urls: str, known: bool = True, what: str = "m@1") -> FetchRequest:
    return FetchRequest(
        what, list(urls), hash_bytes(data) if known else None, len(data) if known else None
    )


# --- plain fetches ----------------------------------------------------------------------------


def test_fetch_with_known_digest(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(3 * MiB)
    http_server.files["/m.bin"] = data
    res = dl.download(req(data, http_server.url("/m.bin")))
    assert (res.fetched, res.digest, res.size, res.source) == (
        True,
        hash_bytes(data),
        len(data),
        http_server.url("/m.bin"),
    )
    assert store.path(res.digest).read_bytes() == data
    # digest and size pinned, too small for ranges: one GET is the whole conversation
    assert methods(http_server, "/m.bin") == ["GET"]
    assert gets(http_server, "/m.bin") == [(None, 200)]
    assert served(http_server, "/m.bin", len(data)) == len(data)
    assert tmp_leftovers(store) == []


def test_fetch_without_digest_hashes_what_arrived(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(200 * KiB, 1)
    http_server.files["/m.bin"] = data
    res = dl.download(req(data, http_server.url("/m.bin"), known=False))
    assert res.digest == hash_bytes(data) and store.path(res.digest).read_bytes() == data


def test_empty_file(http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore) -> None:
    http_server.files["/empty"] = b""
    res = dl.download(req(b"", http_server.url("/empty")))
    assert res.size == 0 and store.path(res.digest).read_bytes() == b""


def test_slow_tiny_file(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(3000, 2)
    http_server.files["/tiny"] = data
    http_server.inject("/tiny", slow(20_000))
    t0 = time.monotonic()
    res = dl.download(req(data, http_server.url("/tiny")))
    assert time.monotonic() - t0 >= 0.1  # it really dripped
    assert store.path(res.digest).read_bytes() == data
    assert gets(http_server, "/tiny") == [(None, 200)]


# --- resume -----------------------------------------------------------------------------------


def test_dropped_connection_resumes_with_a_range(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(3 * MiB, 3)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", drop_after(1_000_000))
    res = dl.download(req(data, http_server.url("/m.bin")))
    assert store.path(res.digest).read_bytes() == data
    assert gets(http_server, "/m.bin") == [(None, 200), ("bytes=1000000-", 206)]
    assert served(http_server, "/m.bin", len(data)) == len(data)  # resumed, not re-downloaded
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []


def test_drops_twice_still_resumes(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(2 * MiB, 4)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", drop_after(300_000), drop_after(500_000))
    res = dl.download(req(data, http_server.url("/m.bin")))
    assert store.path(res.digest).read_bytes() == data
    assert [r for r, _ in gets(http_server, "/m.bin")] == [None, "bytes=300000-", "bytes=800000-"]
    assert served(http_server, "/m.bin", len(data)) == len(data)


def test_range_ignored_on_resume_restarts_cleanly(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(2 * MiB, 5)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", drop_after(700_000), ignore_range())
    res = dl.download(req(data, http_server.url("/m.bin")))
    assert store.path(res.digest).read_bytes() == data
    g = gets(http_server, "/m.bin")
    assert g[:2] == [(None, 200), ("bytes=700000-", 200)]  # the server ignored the Range
    assert g[-1] == (None, 200)  # and vvstore started over from byte 0
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []


def test_server_without_ranges_restarts_after_a_drop(dl: ModelDownloader, store: BlobStore) -> None:
    data = payload(1 * MiB, 6)
    with FaultyHTTPServer({"/m.bin": data}, no_range=True) as srv:
        srv.inject("/m.bin", drop_after(400_000))
        res = dl.download(req(data, srv.url("/m.bin")))
    assert store.path(res.digest).read_bytes() == data
    assert_blobs_sound(store)


def test_partial_left_by_a_failed_run_is_resumed_by_the_next(
    http_server: FaultyHTTPServer, store: BlobStore
) -> None:
    data = payload(2 * MiB, 7)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", drop_after(600_000))
    one_try = ModelDownloader(store, retry=RetryPolicy(attempts=1))
    with pytest.raises(AllSourcesFailedError):
        one_try.download(req(data, http_server.url("/m.bin")))
    [state] = one_try.partials()
    assert state["bytes"] == 600_000 and state["size"] == len(data)
    served(http_server, "/m.bin", 600_000)
    http_server.reset_counters()
    res = ModelDownloader(store, retry=RetryPolicy(attempts=1)).download(
        req(data, http_server.url("/m.bin"))
    )
    assert res.resumed_from == 600_000
    assert gets(http_server, "/m.bin") == [("bytes=600000-", 206)]
    assert served(http_server, "/m.bin", len(data) - 600_000) == len(data) - 600_000
    assert store.path(res.digest).read_bytes() == data
    assert tmp_leftovers(store) == []


def test_changed_etag_discards_the_partial(http_server: FaultyHTTPServer, store: BlobStore) -> None:
    old, new = payload(1 * MiB, 8), payload(1 * MiB, 9)
    http_server.files["/m.bin"] = old
    http_server.inject("/m.bin", drop_after(400_000))
    with pytest.raises(AllSourcesFailedError):
        ModelDownloader(store, retry=RetryPolicy(attempts=1)).download(
            req(old, http_server.url("/m.bin"), known=False)
        )
    http_server.files["/m.bin"] = new  # same size, new content, new ETag
    served(http_server, "/m.bin", 400_000)
    http_server.reset_counters()
    res = ModelDownloader(store, retry=RetryPolicy(attempts=1)).download(
        req(new, http_server.url("/m.bin"), known=False)
    )
    assert res.digest == hash_bytes(new) and res.resumed_from == 0
    assert gets(http_server, "/m.bin") == [(None, 200)]
    assert store.path(res.digest).read_bytes() == new
    assert tmp_leftovers(store) == []


# --- status codes and retries -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "first"),
    [(True, "GET"), (False, "HEAD")],  # a pinned small file needs no HEAD; an unknown one does
)
def test_server_errors_are_retried(
    http_server: FaultyHTTPServer,
    dl: ModelDownloader,
    store: BlobStore,
    sleeps: list[float],
    known: bool,
    first: str,
) -> None:
    data = payload(100 * KiB, 10)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", status(500), status(503), status(429, {"Retry-After": "0"}))
    res = dl.download(req(data, http_server.url("/m.bin"), known=known))
    assert store.path(res.digest).read_bytes() == data
    calls = [(m, code) for m, p, _, code in http_server.requests if p == "/m.bin"]
    ok = [(first, 200)] if first == "GET" else [("HEAD", 200), ("GET", 200)]
    assert calls == [(first, 500), (first, 503), (first, 429), *ok]
    assert sleeps == [0.01, 0.02, 0.0]  # backoff, backoff, Retry-After: 0
    assert tmp_leftovers(store) == []


def test_retry_after_is_capped(
    http_server: FaultyHTTPServer, dl: ModelDownloader, sleeps: list[float]
) -> None:
    data = payload(1000, 11)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", status(429, {"Retry-After": "3600"}))
    dl.download(req(data, http_server.url("/m.bin")))
    assert sleeps == [0.05]  # the policy's cap, not an hour


def test_server_error_on_a_get_is_retried(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(100 * KiB, 12)
    http_server.files["/m.bin"] = data
    src = dl.open(http_server.url("/m.bin"))
    src.info()  # HEAD done; the 503 below hits the GET
    http_server.inject("/m.bin", status(503))
    res = dl._from_source(req(data, src.url), src)
    assert store.path(res.digest).read_bytes() == data
    assert gets(http_server, "/m.bin") == [(None, 503), (None, 200)]


@pytest.mark.parametrize("code", [404, 403])
def test_client_errors_are_not_retried(
    http_server: FaultyHTTPServer,
    dl: ModelDownloader,
    store: BlobStore,
    sleeps: list[float],
    code: int,
) -> None:
    data = payload(1000, 13)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", *[status(code)] * 5)
    with pytest.raises(AllSourcesFailedError) as e:
        dl.download(req(data, http_server.url("/m.bin")))
    assert str(code) in str(e.value) and http_server.url("/m.bin") in str(e.value)
    assert len(http_server.requests) == 1 and sleeps == []
    assert blob_files(store) == []
    assert tmp_leftovers(store) == []  # failed before its first byte: no partial to resume


def test_wrong_bytes_are_quarantined(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(300 * KiB, 14)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", wrong_bytes())
    with pytest.raises(IntegrityError) as e:
        dl.download(req(data, http_server.url("/m.bin")))
    assert e.value.exit_code == 5
    assert blob_files(store) == []
    bad = [p for p in store.layout.quarantine.iterdir() if not p.name.endswith(".reason")]
    assert len(bad) == 1 and len(bad[0].read_bytes()) == len(data) and bad[0].read_bytes() != data
    reason = bad[0].with_name(bad[0].name + ".reason").read_text()
    assert http_server.url("/m.bin") in reason  # a note of the source
    assert len(gets(http_server, "/m.bin")) == 1  # a digest mismatch is not retried
    assert tmp_leftovers(store) == []


# --- fallback ---------------------------------------------------------------------------------


def test_fallback_404_then_dead_then_good(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(500 * KiB, 15)
    http_server.files["/good.bin"] = data
    urls = [http_server.url("/missing.bin"), dead_url(), http_server.url("/good.bin")]
    res = dl.download(req(data, *urls))
    assert res.source == urls[2]
    assert store.path(res.digest).read_bytes() == data
    assert [p for _, p, _, _ in http_server.requests].count("/missing.bin") == 1


def test_every_source_fails(
    http_server: FaultyHTTPServer, dl: ModelDownloader, store: BlobStore
) -> None:
    data = payload(1000, 16)
    http_server.files["/forbidden.bin"] = data
    http_server.inject("/forbidden.bin", status(403))
    dead = dead_url("/dead.bin")
    urls = [http_server.url("/missing.bin"), dead, http_server.url("/forbidden.bin")]
    with pytest.raises(AllSourcesFailedError) as e:
        dl.download(req(data, *urls))
    err = e.value
    assert err.exit_code == 6
    msg = str(err)
    for url, reason in zip(urls, ["404", "connect", "403"], strict=True):
        assert url in msg
        assert any(u == url and reason in r for u, r in err.failures), err.failures
    assert blob_files(store) == []


def test_every_source_serves_wrong_bytes(dl: ModelDownloader, store: BlobStore) -> None:
    data = payload(100 * KiB, 17)
    with FaultyHTTPServer({"/a": data}) as one, FaultyHTTPServer({"/b": data}) as two:
        one.inject("/a", wrong_bytes())
        two.inject("/b", wrong_bytes())
        with pytest.raises(IntegrityError) as e:
            dl.download(req(data, one.url("/a"), two.url("/b")))
    assert e.value.exit_code == 5
    assert one.url("/a") in str(e.value) and two.url("/b") in str(e.value)
    assert blob_files(store) == []
    assert len(list(store.layout.quarantine.glob("*.reason"))) == 2


# --- ranges and batches -----------------------------------------------------------------------


def test_large_file_in_parallel_ranges(http_server: FaultyHTTPServer, store: BlobStore) -> None:
    data = payload(64 * MiB, 18)
    http_server.files["/big.bin"] = data
    dl = ModelDownloader(
        store, jobs=4, part_size=8 * MiB, parallel_min=1 * MiB, retry=RetryPolicy(base=0.01)
    )
    res = dl.download(req(data, http_server.url("/big.bin")))
    path = store.path(res.digest)
    assert path.stat().st_size == len(data)
    with open(path, "rb") as f:
        assert f.read() == data
    assert methods(http_server, "/big.bin")[0] == "HEAD"  # large: ask whether ranges work
    ranged = [(rng, code) for rng, code in gets(http_server, "/big.bin")]
    assert len(ranged) == 8 and all(rng and code == 206 for rng, code in ranged)
    assert sorted(ranged) == sorted(
        (f"bytes={i * 8 * MiB}-{(i + 1) * 8 * MiB - 1}", 206) for i in range(8)
    )
    assert served(http_server, "/big.bin", len(data)) == len(data)
    assert tmp_leftovers(store) == []


def test_interrupted_range_recovers(http_server: FaultyHTTPServer, store: BlobStore) -> None:
    data = payload(4 * MiB, 19)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", drop_after(100_000))  # hits whichever part asks first
    dl = ModelDownloader(
        store, jobs=4, part_size=1 * MiB, parallel_min=1 * MiB, retry=RetryPolicy(base=0.01)
    )
    res = dl.download(req(data, http_server.url("/m.bin")))
    assert store.path(res.digest).read_bytes() == data
    g = gets(http_server, "/m.bin")
    assert len(g) == 5 and all(code == 206 for _, code in g)
    assert served(http_server, "/m.bin", len(data)) == len(data)  # the broken part resumed mid-part
    assert_blobs_sound(store)


def test_ranges_answered_with_200_fall_back_to_one_stream(
    http_server: FaultyHTTPServer, store: BlobStore
) -> None:
    """A server that advertises Accept-Ranges but answers a ranged GET with 200: the download
    must restart cleanly (one stream), not fail the source."""
    data = payload(4 * MiB, 20)
    http_server.files["/m.bin"] = data
    http_server.inject("/m.bin", ignore_range())
    dl = ModelDownloader(
        store, jobs=4, part_size=1 * MiB, parallel_min=1 * MiB, retry=RetryPolicy(base=0.01)
    )
    res = dl.download(req(data, http_server.url("/m.bin")))
    assert store.path(res.digest).read_bytes() == data
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []


def test_fifty_files_in_a_batch(http_server: FaultyHTTPServer, store: BlobStore) -> None:
    datas = [payload(20 * KiB + i, 100 + i) for i in range(50)]
    for i, d in enumerate(datas):
        http_server.files[f"/f/{i}.bin"] = d
    dl = ModelDownloader(store, retry=RetryPolicy(base=0.01))
    results = dl.download_batch(
        [req(d, http_server.url(f"/f/{i}.bin"), what=f"f{i}@1") for i, d in enumerate(datas)],
        jobs=8,
    )
    assert all(isinstance(r, FetchResult) and r.fetched for r in results), [
        r for r in results if not isinstance(r, FetchResult)
    ]
    for d, r in zip(datas, results, strict=True):
        assert isinstance(r, FetchResult)
        assert blake3.blake3(store.path(r.digest).read_bytes()).hexdigest() == hash_bytes(d).hex
    assert len(blob_files(store)) == 50
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []


def test_batch_overlaps_slow_transfers(http_server: FaultyHTTPServer, store: BlobStore) -> None:
    """16 files that each take ~0.4 s: with 8 jobs the batch takes far less than 16 x 0.4 s."""
    datas = [payload(8000, 200 + i) for i in range(16)]
    for i, d in enumerate(datas):
        http_server.files[f"/s/{i}"] = d
        http_server.inject(f"/s/{i}", slow(20_000))
    dl = ModelDownloader(store, retry=RetryPolicy(base=0.01))
    t0 = time.monotonic()
    results: list[Any] = dl.download_batch(
        [req(d, http_server.url(f"/s/{i}"), what=f"s{i}@1") for i, d in enumerate(datas)], jobs=8
    )
    elapsed = time.monotonic() - t0
    assert all(isinstance(r, FetchResult) for r in results)
    assert elapsed < 4.0, elapsed  # one at a time would take >= 6.4 s
