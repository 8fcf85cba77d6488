"""cas.download.ModelDownloader against scripted in-memory sources (no network).

`FakeSource` implements the `Source` protocol and misbehaves on demand, so fallback, retries,
resume, ranged parts, cross-checks and concurrency are tested deterministically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cas.blobs import BlobStore
from cas.digest import hash_bytes
from cas.download import FetchRequest, FetchResult, ModelDownloader
from cas.errors import AllSourcesFailedError, IntegrityError, NotFoundError, SourceError
from cas.redact import redact_url
from cas.retry import RetryPolicy
from cas.sources import RangeIgnored, SourceInfo
from tests.helpers import assert_blobs_sound, blob_files, payload, tmp_leftovers

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

KiB = 1024


Plan = Any  # None | (n_bytes, exception) | "ignore_range"


class FakeSource:
    """A scripted source. `read_plan` holds one item per read call: None serves normally,
    `(n, exc)` serves `n` bytes then raises `exc`, "ignore_range" raises RangeIgnored for a
    ranged read. `hook(source, start, sent)` runs before each chunk (for gates and barriers)."""

    def __init__(
        self,
        url: str,
        data: bytes,
        *,
        version: str | None = "v1",
        sha256: str | None = None,
        ranges: bool = True,
        chunk: int = 4 * KiB,
        info_errors: list[BaseException] | None = None,
        read_plan: list[Plan] | None = None,
        hook: Callable[[FakeSource, int, int], None] | None = None,
        presume: bool = False,
    ) -> None:
        self.url = url
        self.presume = presume
        self.display = redact_url(url)
        self.data = data
        self.version = version
        self.sha256 = sha256
        self.ranges = ranges
        self.chunk = chunk
        self.info_errors = list(info_errors or [])
        self.read_plan = list(read_plan or [])
        self.hook = hook
        self.info_calls = 0
        self.reads: list[tuple[int, int | None]] = []
        self.served = 0
        self._lock = threading.Lock()

    def info(self) -> SourceInfo:
        with self._lock:
            self.info_calls += 1
            if self.info_errors:
                raise self.info_errors.pop(0)
        return SourceInfo(
            size=len(self.data), version=self.version, sha256=self.sha256, ranges=self.ranges
        )

    def presumed(self, size: int) -> SourceInfo | None:
        return SourceInfo(size=size, ranges=self.ranges) if self.presume else None

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self._lock:
            self.reads.append((start, end))
            plan = self.read_plan.pop(0) if self.read_plan else None
        stop = len(self.data) if end is None else end
        if start and start >= len(self.data):
            raise SourceError(self.display, "HTTP 416 Range Not Satisfiable")  # as a server says
        if plan == "ignore_range" and (start or end is not None):
            raise RangeIgnored(f"{self.display} answered a Range request with HTTP 200")
        limit, exc = plan if isinstance(plan, tuple) else (None, None)
        pos, sent = start, 0
        while pos < stop:
            if limit is not None and sent >= limit:
                raise exc
            n = min(self.chunk, stop - pos)
            if limit is not None:
                n = min(n, limit - sent)
            if self.hook:
                self.hook(self, start, sent)
            with self._lock:
                self.served += n
            yield self.data[pos : pos + n]
            pos += n
            sent += n

    def is_dir(self) -> bool:
        return False

    def list(self) -> list[Any]:
        raise NotImplementedError


def make_downloader(
    store: BlobStore, sources: list[FakeSource] | dict[str, FakeSource], **kw: Any
) -> ModelDownloader:
    table = sources if isinstance(sources, dict) else {s.url: s for s in sources}

    def opener(url: str, base_dir: Path | None = None, options: Any = None) -> FakeSource:
        if url not in table:
            raise SourceError(
                redact_url(url), "cannot connect: connection refused", transient=False
            )
        return table[url]

    kw.setdefault("retry", RetryPolicy(attempts=5, base=0.001, cap=0.01))
    kw.setdefault("sleep", lambda s: None)
    return ModelDownloader(store, opener=opener, **kw)


def request(
    data: bytes, *urls: str, known: bool = True, what: str = "m@1", sha256: str | None = None
) -> FetchRequest:
    return FetchRequest(
        what, list(urls), hash_bytes(data) if known else None, len(data) if known else None, sha256
    )


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


# --- one file, one source ---------------------------------------------------------------------


def test_download_publishes_a_verified_read_only_blob(store: BlobStore) -> None:
    data = payload(100 * KiB)
    src = FakeSource("http://a/m.bin", data)
    got: list[int] = []
    res = make_downloader(store, [src], progress=got.append).download(request(data, src.url))
    assert isinstance(res, FetchResult)
    assert (res.digest, res.size, res.fetched, res.source, res.resumed_from) == (
        hash_bytes(data),
        len(data),
        True,
        src.url,
        0,
    )
    path = store.path(res.digest)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sum(got) == len(data)  # progress saw every byte once
    assert src.reads == [(0, None)]  # one streamed read
    assert tmp_leftovers(store) == []
    assert any(
        e["action"] == "publish" and e["digest"] == str(res.digest) for e in store.audit.entries()
    )


def test_unknown_digest_is_computed(store: BlobStore) -> None:
    data = payload(10 * KiB, 1)
    src = FakeSource("http://a/m.bin", data)
    res = make_downloader(store, [src]).download(request(data, src.url, known=False))
    assert res.digest == hash_bytes(data) and res.size == len(data)
    assert store.has(res.digest)


def test_empty_file(store: BlobStore) -> None:
    src = FakeSource("http://a/empty", b"")
    res = make_downloader(store, [src]).download(request(b"", src.url))
    assert res.digest == hash_bytes(b"") and res.size == 0
    assert store.path(res.digest).read_bytes() == b""


def test_present_blob_is_not_fetched_and_no_source_is_opened(store: BlobStore) -> None:
    data = payload(5 * KiB)
    store.publish_bytes(data)

    def opener(*a: Any, **k: Any) -> Any:
        raise AssertionError("a present blob must not open any source")

    dl = ModelDownloader(store, opener=opener)
    res = dl.download(request(data, "http://a/m.bin"))
    assert res.fetched is False and res.digest == hash_bytes(data) and res.size == len(data)


def test_no_sources_is_not_found(store: BlobStore) -> None:
    data = payload(10)
    with pytest.raises(NotFoundError) as e:
        make_downloader(store, []).download(request(data))
    assert e.value.exit_code == 4


def test_wrong_digest_goes_to_quarantine_never_to_blobs(store: BlobStore) -> None:
    data, wrong = payload(20 * KiB, 1), payload(20 * KiB, 2)
    src = FakeSource("http://a/m.bin", wrong)
    with pytest.raises(IntegrityError) as e:
        make_downloader(store, [src]).download(request(data, src.url))
    assert e.value.exit_code == 5
    assert blob_files(store) == []
    q = sorted(store.layout.quarantine.iterdir())
    bad = [p for p in q if not p.name.endswith(".reason")]
    assert len(bad) == 1 and bad[0].read_bytes() == wrong
    reason = bad[0].with_name(bad[0].name + ".reason").read_text()
    assert str(hash_bytes(data)) in reason and "m@1" in reason
    assert tmp_leftovers(store) == []


def test_size_mismatch_is_refused_before_reading(store: BlobStore) -> None:
    data = payload(1000)
    src = FakeSource("http://a/m.bin", data + b"x")
    with pytest.raises(IntegrityError):
        make_downloader(store, [src]).download(request(data, src.url))
    assert src.reads == []
    assert blob_files(store) == []


# --- asking the source first, or not --------------------------------------------------------


def test_pinned_small_file_is_one_read_without_info(store: BlobStore) -> None:
    """Digest and size known, too small for ranges, a source that can presume: no info()."""
    data = payload(10 * KiB, 3)
    src = FakeSource("http://a/m.bin", data, presume=True, info_errors=[AssertionError("asked")])
    res = make_downloader(store, [src]).download(request(data, src.url))
    assert store.path(res.digest).read_bytes() == data
    assert (src.info_calls, src.reads) == (0, [(0, None)])
    assert tmp_leftovers(store) == []


@pytest.mark.parametrize(
    ("presume", "known", "size"),
    [
        (False, True, 10 * KiB),  # the source must be asked (HF: sha256 and commit)
        (True, False, 10 * KiB),  # nothing pinned: size and version come from the source
        (True, True, 200 * KiB),  # large enough for parallel ranges: whether they work
    ],
)
def test_info_is_asked_when_it_can_tell_something(
    store: BlobStore, presume: bool, known: bool, size: int
) -> None:
    data = payload(size, 4)
    src = FakeSource("http://a/m.bin", data, presume=presume)
    dl = make_downloader(store, [src], jobs=4, part_size=64 * KiB, parallel_min=128 * KiB)
    res = dl.download(request(data, src.url, known=known))
    assert store.path(res.digest).read_bytes() == data
    assert src.info_calls == 1


def test_presumed_size_is_still_checked_against_the_bytes(store: BlobStore) -> None:
    """Skipping info() skips no check: a longer object is refused and never published."""
    data = payload(1000, 5)
    src = FakeSource("http://a/m.bin", data + b"x", presume=True)
    with pytest.raises(IntegrityError):
        make_downloader(store, [src]).download(request(data, src.url))
    assert blob_files(store) == []
    assert tmp_leftovers(store) == []


def test_a_failure_before_the_first_byte_leaves_no_partial(store: BlobStore) -> None:
    data = payload(1000, 6)
    src = FakeSource(
        "http://a/m.bin",
        data,
        presume=True,
        read_plan=[(0, SourceError("http://a/m.bin", "HTTP 404 Not Found"))],
    )
    with pytest.raises(AllSourcesFailedError) as e:
        make_downloader(store, [src]).download(request(data, src.url))
    assert "HTTP 404" in str(e.value) and "http://a/m.bin" in str(e.value)
    assert tmp_leftovers(store) == []


# --- the sha256 cross-check -------------------------------------------------------------------


def test_source_sha256_is_cross_checked_and_reported(store: BlobStore) -> None:
    data = payload(30 * KiB)
    sha = hashlib.sha256(data).hexdigest()
    src = FakeSource("hf://org/r@" + "a" * 40 + "/m.bin", data, sha256=sha)
    res = make_downloader(store, [src]).download(request(data, src.url, known=False))
    assert res.sha256 == sha


@pytest.mark.parametrize("known", [True, False])
def test_source_sha256_mismatch_is_an_integrity_error(store: BlobStore, known: bool) -> None:
    """The source claims one sha256 (an HF LFS oid) and serves other bytes."""
    data = payload(30 * KiB)
    src = FakeSource("hf://org/r@" + "a" * 40 + "/m.bin", data, sha256="0" * 64)
    with pytest.raises(IntegrityError) as e:
        make_downloader(store, [src]).download(request(data, src.url, known=known))
    assert e.value.exit_code == 5
    assert "sha256" in str(e.value)
    assert blob_files(store) == []
    reasons = [p.read_text() for p in store.layout.quarantine.glob("*.reason")]
    assert len(reasons) == 1 and "sha256" in reasons[0]


def test_expected_sha256_from_the_request_is_checked_too(store: BlobStore) -> None:
    data = payload(3 * KiB)
    src = FakeSource("http://a/m.bin", data)  # offers no sha256
    with pytest.raises(IntegrityError):
        make_downloader(store, [src]).download(request(data, src.url, known=False, sha256="1" * 64))
    assert blob_files(store) == []


def test_sha256_is_checked_in_ranged_mode(store: BlobStore) -> None:
    data = payload(512 * KiB)
    src = FakeSource("http://a/m.bin", data, sha256="0" * 64)
    dl = make_downloader(store, [src], jobs=4, part_size=64 * KiB, parallel_min=128 * KiB)
    with pytest.raises(IntegrityError):
        dl.download(request(data, src.url))
    assert len(src.reads) > 1 and all(end is not None for _, end in src.reads)  # it was ranged
    assert blob_files(store) == []


# --- fallback ---------------------------------------------------------------------------------


def test_fallback_to_the_third_source(store: BlobStore) -> None:
    data = payload(40 * KiB)
    s404 = FakeSource(
        "http://one/m.bin",
        data,
        info_errors=[SourceError("http://one/m.bin", "HTTP 404 Not Found")],
    )
    dead = FakeSource(
        "http://two/m.bin",
        data,
        info_errors=[ConnectionRefusedError(111, "Connection refused")] * 10,
    )
    good = FakeSource("http://three/m.bin", data)
    sleeps: list[float] = []
    dl = make_downloader(
        store,
        [s404, dead, good],
        sleep=sleeps.append,
        retry=RetryPolicy(attempts=3, base=0.01, cap=1.0, jitter=0.0),
    )
    res = dl.download(request(data, s404.url, dead.url, good.url))
    assert res.source == good.url
    assert s404.info_calls == 1  # a 404 is not retried
    assert dead.info_calls == 3  # a refused connection is, up to `attempts` tries
    assert sleeps == [0.01, 0.02]  # the backoff between those tries
    assert s404.reads == [] and dead.reads == []
    assert store.path(res.digest).read_bytes() == data


def test_all_sources_fail_lists_every_url_and_reason(store: BlobStore) -> None:
    data = payload(1000)
    a = FakeSource(
        "http://one/m.bin",
        data,
        info_errors=[SourceError("http://one/m.bin", "HTTP 404 Not Found")],
    )
    b = FakeSource(
        "http://user:pw@two/m.bin",
        data,
        info_errors=[SourceError("http://***@two/m.bin", "HTTP 403 Forbidden")],
    )
    with pytest.raises(AllSourcesFailedError) as e:
        make_downloader(store, [a, b]).download(request(data, a.url, b.url, "http://three/m.bin"))
    err = e.value
    assert err.exit_code == 6
    msg = str(err)
    for url, reason in (
        ("http://one/m.bin", "404"),
        ("two/m.bin", "403"),
        ("http://three/m.bin", "refused"),
    ):
        assert any(url in u and reason in r for u, r in err.failures), err.failures
        assert url in msg and reason in msg
    assert "pw" not in msg


def test_all_sources_wrong_is_an_integrity_error(store: BlobStore) -> None:
    data = payload(8 * KiB)
    a = FakeSource("http://one/m.bin", payload(8 * KiB, 7))
    b = FakeSource("http://two/m.bin", payload(8 * KiB, 8))
    with pytest.raises(IntegrityError) as e:
        make_downloader(store, [a, b]).download(request(data, a.url, b.url))
    assert e.value.exit_code == 5
    assert a.url in str(e.value) and b.url in str(e.value)
    assert len(list(store.layout.quarantine.glob("*.reason"))) == 2
    assert blob_files(store) == []


def test_wrong_bytes_then_a_dead_source_is_a_source_failure(store: BlobStore) -> None:
    data = payload(8 * KiB)
    a = FakeSource("http://one/m.bin", payload(8 * KiB, 7))
    with pytest.raises(AllSourcesFailedError) as e:
        make_downloader(store, [a]).download(request(data, a.url, "http://gone/m.bin"))
    assert e.value.exit_code == 6
    assert len(e.value.failures) == 2


def test_wrong_first_source_then_good_one(store: BlobStore) -> None:
    data = payload(8 * KiB)
    a = FakeSource("http://one/m.bin", payload(8 * KiB, 7))
    b = FakeSource("http://two/m.bin", data)
    res = make_downloader(store, [a, b]).download(request(data, a.url, b.url))
    assert res.source == b.url and store.path(res.digest).read_bytes() == data
    assert [p.name for p in blob_files(store)] == [hash_bytes(data).hex[2:]]


# --- retries ----------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_the_schedule(store: BlobStore) -> None:
    data = payload(4 * KiB)
    src = FakeSource(
        "http://a/m.bin",
        data,
        info_errors=[
            SourceError("http://a/m.bin", "HTTP 500", transient=True),
            SourceError("http://a/m.bin", "HTTP 503", transient=True),
            SourceError("http://a/m.bin", "HTTP 429", transient=True, retry_after=0.0),
            TimeoutError("timed out"),
        ],
    )
    sleeps: list[float] = []
    dl = make_downloader(
        store,
        [src],
        sleep=sleeps.append,
        retry=RetryPolicy(attempts=5, base=0.5, cap=30.0, jitter=0.0),
    )
    res = dl.download(request(data, src.url))
    assert res.fetched and src.info_calls == 5
    assert sleeps == [0.5, 1.0, 0.0, 4.0]  # Retry-After: 0 honoured in place of 2.0


def test_retry_after_is_capped(store: BlobStore) -> None:
    data = payload(4 * KiB)
    src = FakeSource(
        "http://a/m.bin",
        data,
        info_errors=[SourceError("http://a/m.bin", "HTTP 429", transient=True, retry_after=3600.0)],
    )
    sleeps: list[float] = []
    dl = make_downloader(store, [src], sleep=sleeps.append, retry=RetryPolicy(cap=2.5))
    dl.download(request(data, src.url))
    assert sleeps == [2.5]


@pytest.mark.parametrize(
    "exc",
    [
        SourceError("http://a/m.bin", "HTTP 404 Not Found"),
        SourceError("http://a/m.bin", "HTTP 403 Forbidden"),
        FileNotFoundError(2, "No such file"),
        PermissionError(13, "Permission denied"),
    ],
    ids=repr,
)
def test_permanent_errors_are_not_retried(store: BlobStore, exc: BaseException) -> None:
    data = payload(100)
    src = FakeSource("http://a/m.bin", data, info_errors=[exc] * 5)
    sleeps: list[float] = []
    with pytest.raises(AllSourcesFailedError):
        make_downloader(store, [src], sleep=sleeps.append).download(request(data, src.url))
    assert src.info_calls == 1 and sleeps == []


def test_retries_stop_after_the_attempts(store: BlobStore) -> None:
    data = payload(100)
    src = FakeSource(
        "http://a/m.bin", data, read_plan=[(0, ConnectionResetError(104, "reset"))] * 10
    )
    with pytest.raises(AllSourcesFailedError):
        make_downloader(store, [src], retry=RetryPolicy(attempts=4, base=0.0)).download(
            request(data, src.url)
        )
    assert len(src.reads) == 4


def test_a_dropped_stream_resumes_from_the_bytes_received(store: BlobStore) -> None:
    data = payload(64 * KiB)
    src = FakeSource(
        "http://a/m.bin", data, read_plan=[(20 * KiB, ConnectionResetError(104, "reset"))]
    )
    got: list[int] = []
    res = make_downloader(store, [src], progress=got.append).download(request(data, src.url))
    assert src.reads == [(0, None), (20 * KiB, None)]
    assert src.served == len(data)  # nothing was sent twice
    assert sum(got) == len(data)
    assert store.path(res.digest).read_bytes() == data


def test_a_dropped_stream_that_cannot_range_restarts(store: BlobStore) -> None:
    data = payload(64 * KiB)
    src = FakeSource(
        "http://a/m.bin",
        data,
        read_plan=[(20 * KiB, ConnectionResetError(104, "reset")), "ignore_range"],
    )
    res = make_downloader(store, [src]).download(request(data, src.url))
    assert src.reads == [(0, None), (20 * KiB, None), (0, None)]
    assert store.path(res.digest).read_bytes() == data


# --- partials and resume across runs ----------------------------------------------------------


def leave_partial(
    store: BlobStore, src: FakeSource, data: bytes, n: int, known: bool = True
) -> None:
    """A download that dies (permanently) after n bytes, leaving its partial behind."""
    src.read_plan = [(n, SourceError(src.display, "HTTP 403 Forbidden"))]
    with pytest.raises(AllSourcesFailedError):
        make_downloader(store, [src]).download(request(data, src.url, known=known))


def test_partial_is_listed_and_resumed(store: BlobStore) -> None:
    data = payload(100 * KiB)
    src = FakeSource("http://user:pw@a/m.bin", data)
    leave_partial(store, src, data, 36 * KiB)
    parts = make_downloader(store, [src]).partials()
    assert len(parts) == 1
    p = parts[0]
    assert (p["what"], p["bytes"], p["size"], p["mode"]) == ("m@1", 36 * KiB, len(data), "stream")
    assert "pw" not in json.dumps(p)  # resume state holds no credentials
    src.reads.clear()
    src.served = 0
    res = make_downloader(store, [src]).download(request(data, src.url))
    assert src.reads == [(36 * KiB, None)]
    assert src.served == len(data) - 36 * KiB
    assert res.resumed_from == 36 * KiB
    assert store.path(res.digest).read_bytes() == data
    assert make_downloader(store, [src]).partials() == []
    assert tmp_leftovers(store) == []


def test_partial_of_a_known_digest_resumes_from_another_source(store: BlobStore) -> None:
    data = payload(100 * KiB)
    a = FakeSource("http://one/m.bin", data)
    leave_partial(store, a, data, 50 * KiB)
    b = FakeSource("http://two/m.bin", data, version="other")
    res = make_downloader(store, [b]).download(request(data, b.url))
    assert b.reads == [(50 * KiB, None)] and res.resumed_from == 50 * KiB
    assert store.path(res.digest).read_bytes() == data


def test_stale_partial_of_a_changed_source_is_discarded(store: BlobStore) -> None:
    old, new = payload(100 * KiB, 1), payload(100 * KiB, 2)
    src = FakeSource("http://a/m.bin", old, version="etag-1")
    leave_partial(store, src, old, 40 * KiB, known=False)
    src.data, src.version = new, "etag-2"
    src.reads.clear()
    res = make_downloader(store, [src]).download(request(new, src.url, known=False))
    assert src.reads == [(0, None)]
    assert res.digest == hash_bytes(new) and res.resumed_from == 0
    assert tmp_leftovers(store) == []


def test_corrupt_partial_is_quarantined_and_the_download_starts_over(store: BlobStore) -> None:
    data = payload(100 * KiB)
    src = FakeSource("http://a/m.bin", data)
    leave_partial(store, src, data, 40 * KiB)
    [part] = store.layout.tmp.glob("*.part")
    with open(part, "r+b") as f:  # bit rot in the bytes already on disk
        f.seek(100)
        f.write(b"\x00" * 10)
    src.reads.clear()
    res = make_downloader(store, [src]).download(request(data, src.url))
    assert src.reads == [(40 * KiB, None), (0, None)]
    assert store.path(res.digest).read_bytes() == data
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []


def test_complete_partial_left_before_publishing_is_published_without_reading(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that dies between verifying and publishing leaves a complete partial; the
    next fetch must publish it, not ask the source for bytes past the end (HTTP 416)."""
    data = payload(64 * KiB)
    src = FakeSource("http://a/m.bin", data)
    real = BlobStore.publish_temp

    def dies(self: BlobStore, *a: Any, **k: Any) -> Any:
        raise OSError(5, "simulated crash before publishing")

    monkeypatch.setattr(BlobStore, "publish_temp", dies)
    with pytest.raises(AllSourcesFailedError):
        make_downloader(store, [src]).download(request(data, src.url))
    monkeypatch.setattr(BlobStore, "publish_temp", real)
    assert [p["bytes"] for p in make_downloader(store, [src]).partials()] == [len(data)]
    src.reads.clear()
    src.served = 0
    res = make_downloader(store, [src]).download(request(data, src.url))
    assert store.path(res.digest).read_bytes() == data
    assert src.served == 0
    assert tmp_leftovers(store) == []


# --- ranged (parts) mode ----------------------------------------------------------------------


def ranged(store: BlobStore, srcs: list[FakeSource], **kw: Any) -> ModelDownloader:
    kw.setdefault("jobs", 4)
    return make_downloader(store, srcs, part_size=64 * KiB, parallel_min=128 * KiB, **kw)


def test_large_file_arrives_in_ranges(store: BlobStore) -> None:
    data = payload(1000 * KiB)  # not a multiple of the part size
    src = FakeSource("http://a/m.bin", data, sha256=hashlib.sha256(data).hexdigest())
    res = ranged(store, [src]).download(request(data, src.url))
    assert store.path(res.digest).read_bytes() == data
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    parts = sorted(src.reads)
    assert len(parts) == 16
    assert parts[0] == (0, 64 * KiB) and parts[-1] == (15 * 64 * KiB, len(data))
    # contiguous, no overlap
    assert all(a[1] == b[0] for a, b in zip(parts[:-1], parts[1:], strict=True))
    assert src.served == len(data)


def test_small_file_or_no_ranges_streams(store: BlobStore) -> None:
    data = payload(1000 * KiB)
    src = FakeSource("http://a/m.bin", data, ranges=False)
    ranged(store, [src]).download(request(data, src.url))
    assert src.reads == [(0, None)]
    small = payload(100 * KiB, 3)
    src2 = FakeSource("http://a/s.bin", small)
    ranged(store, [src2]).download(request(small, src2.url))
    assert src2.reads == [(0, None)]


def test_a_dropped_part_resumes_within_the_part(store: BlobStore) -> None:
    data = payload(512 * KiB)
    src = FakeSource(
        "http://a/m.bin", data, read_plan=[(10 * KiB, ConnectionResetError(104, "reset"))]
    )
    res = ranged(store, [src], jobs=2).download(request(data, src.url))
    assert store.path(res.digest).read_bytes() == data
    assert src.served == len(data)


def test_parts_resume_across_runs(store: BlobStore) -> None:
    data = payload(512 * KiB)  # 8 parts
    src = FakeSource("http://a/m.bin", data)
    src.read_plan = [None, None, (5 * KiB, SourceError(src.display, "HTTP 403 Forbidden"))]
    with pytest.raises(AllSourcesFailedError):
        ranged(store, [src], jobs=2).download(request(data, src.url))
    [state] = ranged(store, [src]).partials()
    assert (
        state["mode"] == "parts"
        and state["done"]
        and state["bytes"] == 64 * KiB * len(state["done"])
    )
    done = set(state["done"])
    src.reads.clear()
    src.served = 0
    res = ranged(store, [src], jobs=2).download(request(data, src.url))
    assert store.path(res.digest).read_bytes() == data
    assert {start // (64 * KiB) for start, _ in src.reads} == set(range(8)) - done
    assert src.served == len(data) - state["bytes"]
    assert tmp_leftovers(store) == []


def test_ranges_answered_with_200_fall_back_to_one_stream(store: BlobStore) -> None:
    """A source that advertises ranges but answers 200 must restart cleanly, not fail."""
    data = payload(512 * KiB)
    src = FakeSource("http://a/m.bin", data, read_plan=["ignore_range"] * 64)
    res = ranged(store, [src]).download(request(data, src.url))
    assert store.path(res.digest).read_bytes() == data
    assert (0, None) in src.reads


# --- batches and concurrency ------------------------------------------------------------------


def test_batch_runs_jobs_in_parallel(store: BlobStore) -> None:
    barrier = threading.Barrier(8, timeout=10)

    def meet(src: FakeSource, start: int, sent: int) -> None:
        if sent == 0 and start == 0:
            barrier.wait()  # breaks (BrokenBarrierError) unless 8 reads run at once

    datas = [payload(8 * KiB, i) for i in range(8)]
    srcs = [FakeSource(f"http://a/{i}", d, hook=meet) for i, d in enumerate(datas)]
    reqs = [
        request(d, s.url, what=f"m{i}@1") for i, (d, s) in enumerate(zip(datas, srcs, strict=True))
    ]
    results = make_downloader(store, srcs).download_batch(reqs, jobs=8)
    assert all(isinstance(r, FetchResult) for r in results), results
    assert [r.digest for r in results] == [hash_bytes(d) for d in datas]  # in request order


def test_batch_returns_each_error_in_place(store: BlobStore) -> None:
    good, bad = payload(1000, 1), payload(1000, 2)
    a = FakeSource("http://a/good", good)
    b = FakeSource("http://a/bad", payload(1000, 3))
    results = make_downloader(store, [a, b]).download_batch(
        [
            request(bad, b.url, what="bad@1"),
            request(good, a.url, what="good@1"),
            request(payload(1000, 4), "http://nowhere/x", what="dead@1"),
        ],
        jobs=3,
    )
    assert isinstance(results[0], IntegrityError)
    assert isinstance(results[1], FetchResult) and results[1].digest == hash_bytes(good)
    assert isinstance(results[2], AllSourcesFailedError)


def test_same_digest_in_one_batch_is_fetched_once(store: BlobStore) -> None:
    data = payload(64 * KiB)
    src = FakeSource("http://a/m.bin", data, hook=lambda s, st, n: time.sleep(0.001))
    results = make_downloader(store, [src]).download_batch(
        [request(data, src.url, what=f"m{i}@1") for i in range(4)], jobs=4
    )
    assert all(isinstance(r, FetchResult) for r in results)
    assert sum(r.fetched for r in results if isinstance(r, FetchResult)) == 1
    assert src.served == len(data)
    assert_blobs_sound(store)


def _overlapping_pair(
    store: BlobStore, known: bool, monkeypatch: pytest.MonkeyPatch, no_lock: bool
) -> list[Any]:
    """Two downloaders fetch the same thing at once: the first stalls mid-stream (its partial
    live in tmp/) until the second is reading; the second then stalls until the first is done."""
    data = payload(256 * KiB)
    first_stalled, second_reading, first_done = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )

    def stall(src: FakeSource, start: int, sent: int) -> None:
        name = threading.current_thread().name
        if name == "first" and sent >= 64 * KiB and not second_reading.is_set():
            first_stalled.set()
            second_reading.wait(10)
        elif name == "second" and not second_reading.is_set():
            second_reading.set()
            first_done.wait(10)

    if no_lock:  # a filesystem where locks silently do nothing (NFS, some clusters)
        import contextlib

        monkeypatch.setattr(
            ModelDownloader, "_digest_lock", lambda self, d: contextlib.nullcontext()
        )
    src = FakeSource("http://a/m.bin", data, hook=stall)
    out: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            out[name] = make_downloader(store, [src]).download(request(data, src.url, known=known))
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out[name] = e
        finally:
            if name == "first":
                first_done.set()

    t1 = threading.Thread(target=run, args=("first",), name="first")
    t1.start()
    assert first_stalled.wait(10)
    t2 = threading.Thread(target=run, args=("second",), name="second")
    t2.start()
    if known and not no_lock:
        time.sleep(0.3)  # the second waits on the digest lock, not reading: let the first go on
        second_reading.set()
    t1.join(20)
    t2.join(20)
    return [out["first"], out["second"], data]


@pytest.mark.parametrize(
    ("known", "no_lock"),
    [(True, False), (True, True), (False, False)],
    ids=["digest-locked", "digest-no-lock", "no-digest"],
)
def test_two_overlapping_downloads_both_succeed(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch, known: bool, no_lock: bool
) -> None:
    first, second, data = _overlapping_pair(store, known, monkeypatch, no_lock)
    assert isinstance(first, FetchResult), first
    assert isinstance(second, FetchResult), second
    assert first.digest == second.digest == hash_bytes(data)
    assert [p.name for p in blob_files(store)] == [hash_bytes(data).hex[2:]]
    assert_blobs_sound(store)
    assert tmp_leftovers(store) == []


def test_digest_lock_lets_one_download_at_a_time(store: BlobStore) -> None:
    data = payload(64 * KiB)
    src = FakeSource("http://a/m.bin", data, hook=lambda s, st, n: time.sleep(0.002))
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                make_downloader(store, [src]).download(request(data, src.url))
            )
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 3 and sum(r.fetched for r in results) == 1
    assert src.served == len(data)


# --- per-file progress ------------------------------------------------------------------------


class FileBars:
    """A `file_progress` that records each file's (what, size, done), bytes and whether its
    context was exited."""

    def __init__(self, min_size: int = 0) -> None:
        self.min_size = min_size
        self.opened: list[tuple[str, int, int]] = []
        self.got: dict[str, int] = {}
        self.closed: list[str] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, what: str, size: int, done: int) -> Iterator[Callable[[int], None] | None]:
        with self._lock:
            self.opened.append((what, size, done))

        def add(n: int) -> None:
            with self._lock:
                self.got[what] = self.got.get(what, 0) + n

        try:
            yield None if size < self.min_size else add
        finally:
            with self._lock:
                self.closed.append(what)


@pytest.mark.parametrize("mode", ["stream", "parts"])
def test_each_file_gets_its_own_progress_beside_the_total(store: BlobStore, mode: str) -> None:
    big, small = payload(600 * KiB, 20), payload(10 * KiB, 21)
    srcs = [FakeSource("http://a/big", big), FakeSource("http://a/small", small)]
    bars, total = FileBars(min_size=100 * KiB), []
    dl = (ranged if mode == "parts" else make_downloader)(
        store, srcs, progress=total.append, file_progress=bars
    )
    results = dl.download_batch([request(big, srcs[0].url, what="big"),
                                 request(small, srcs[1].url, what="small")])
    assert all(isinstance(r, FetchResult) for r in results)
    assert sorted(bars.opened) == [("big", len(big), 0), ("small", len(small), 0)]
    assert bars.got == {"big": len(big)}  # the small one declined a bar
    assert sorted(bars.closed) == ["big", "small"]
    assert sum(total) == len(big) + len(small)  # the total still sees every byte once


def test_a_resumed_file_starts_its_progress_at_the_bytes_already_there(store: BlobStore) -> None:
    data = payload(100 * KiB, 22)
    src = FakeSource("http://a/m.bin", data)
    leave_partial(store, src, data, 36 * KiB)
    bars = FileBars()
    make_downloader(store, [src], file_progress=bars).download(request(data, src.url))
    assert bars.opened == [("m@1", len(data), 36 * KiB)]
    assert bars.got == {"m@1": len(data) - 36 * KiB}


def test_a_failed_file_closes_its_progress(store: BlobStore) -> None:
    data = payload(50 * KiB, 23)
    src = FakeSource("http://a/m.bin", data, read_plan=[(10 * KiB, PermissionError("denied"))])
    bars = FileBars()
    with pytest.raises(AllSourcesFailedError):
        make_downloader(store, [src], file_progress=bars).download(request(data, src.url))
    assert bars.closed == ["m@1"]


# --- connection pool for S3 -------------------------------------------------------------------


def test_s3_may_open_as_many_connections_as_requests_in_flight(store: BlobStore) -> None:
    dl = ModelDownloader(store, jobs=40, options={"https": {"headers": {"X": "1"}}})
    assert dl.options["s3"]["config_kwargs"]["max_pool_connections"] == 40
    assert dl.options["https"] == {"headers": {"X": "1"}}  # other schemes as given


def test_a_pool_size_from_the_manifest_is_kept(store: BlobStore) -> None:
    given = {"s3": {"endpoint_url": "http://x", "config_kwargs": {"max_pool_connections": 5,
                                                                   "read_timeout": 9}}}
    dl = ModelDownloader(store, jobs=40, options=given)
    assert dl.options["s3"] == given["s3"]
    assert given["s3"]["config_kwargs"] == {"max_pool_connections": 5, "read_timeout": 9}
