"""Verified, resumable, parallel downloads into the store.

Each file streams into a process-unique partial file in `tmp/` (hashed while written), or,
when large and the source serves ranges, arrives in parallel byte ranges and is hashed in
order afterwards. Nothing reaches `blobs/` before its size and digest are checked; wrong bytes
go to `quarantine/`. A partial survives a killed process with a small JSON state beside it and
is resumed by whoever fetches the same thing next (`cas/partials.py`). A per-digest lock only
avoids duplicate work.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from . import partials, smallfiles
from .atomic import WriteBehind
from .blobs import BlobStore, Published
from .digest import Digest, Hasher, Progress, hash_file
from .errors import (
    AllSourcesFailedError,
    IntegrityError,
    LockTimeoutError,
    NotFoundError,
    SourceError,
    VVStoreError,
)
from .failpoints import failpoint
from .partials import Partial
from .retry import RetryPolicy, retry_after_of
from .sources import RangeIgnored, Source, SourceInfo, open_source

log = logging.getLogger("vvstore")
PART_SIZE = 16 << 20
PARALLEL_MIN = 64 << 20


FileProgress = Callable[[str, int, int], AbstractContextManager[Progress | None]]
"""Per-file progress: called with (what, size, bytes already there) as a file's transfer
starts; the context it returns gives a callback for that file's bytes (or None), and is
exited when the transfer ends, however it ends."""


def default_jobs() -> int:
    """Parallel transfers: network-bound, so a few per core."""
    return min(16, max(4, 4 * (os.cpu_count() or 1)))


@dataclass
class FetchRequest:
    """One file wanted: where it may come from and, when known, what it must be."""

    what: str
    sources: list[str]
    digest: Digest | None = None
    size: int | None = None
    sha256: str | None = None


@dataclass
class FetchResult:
    """How a request was satisfied."""

    request: FetchRequest
    digest: Digest
    size: int
    fetched: bool  # bytes were transferred
    source: str | None = None  # the resolved source URL (credentials never included)
    sha256: str | None = None
    resumed_from: int = 0
    new: bool = False  # the blob was not in the store before (False when fetched bytes
    # turned out to be a blob already there, e.g. a URL whose digest was unknown)


class ModelDownloader:
    """Fetches files from their sources into a :class:`BlobStore`.

    Args:
        store: where verified blobs go.
        base_dir: relative local sources are relative to this (the project directory).
        options: fsspec storage options by scheme (`{"s3": {"endpoint_url": ...}}`).
        retry: backoff for transient errors.
        jobs: parallel files in a batch, and parallel ranges within one large file.
        progress: called with each number of bytes received (thread-safe callers only).
        file_progress: per-file progress (e.g. a bar for each large file), beside `progress`.
        opener: URL → :class:`Source`; tests pass a faulty one.
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        base_dir: Path | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        retry: RetryPolicy | None = None,
        jobs: int | None = None,
        part_size: int = PART_SIZE,
        parallel_min: int = PARALLEL_MIN,
        progress: Progress | None = None,
        file_progress: FileProgress | None = None,
        lock_timeout: float = 3600.0,
        opener: Callable[..., Source] = open_source,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.base_dir = base_dir
        # requests at once for small files on an event loop, and S3 connections to carry them
        self.in_flight = jobs or smallfiles.default_jobs(os.cpu_count() or 1)
        self.options = _with_connections(options or {}, self.in_flight)
        self.retry = retry or RetryPolicy()
        self.jobs = jobs or default_jobs()
        self.part_size = part_size
        self.parallel_min = parallel_min
        self.progress = progress
        self.file_progress = file_progress
        self.lock_timeout = lock_timeout
        self.opener = opener
        self.sleep = sleep

    # --- public ------------------------------------------------------------------------------

    def open(self, url: str) -> Source:
        return self.opener(url, base_dir=self.base_dir, options=self.options)

    def download(self, request: FetchRequest) -> FetchResult:
        """Fetch one file, trying its sources in order; resumes any partial left behind."""
        if request.digest is not None and self.store.freshen(request.digest):
            return FetchResult(
                request, request.digest, self.store.path(request.digest).stat().st_size, False
            )
        if not request.sources:
            raise NotFoundError(
                f"{request.what} is not in the store and has no sources",
                hint="add a source to the manifest, or fetch from a remote",
            )
        with self._digest_lock(request.digest):
            if request.digest is not None and self.store.freshen(request.digest):
                return FetchResult(
                    request, request.digest, self.store.path(request.digest).stat().st_size, False
                )
            return self._with_fallback(request)

    resume_download = download  # every download resumes what a previous attempt left

    def download_batch(
        self, requests: Iterable[FetchRequest], jobs: int | None = None
    ) -> list[FetchResult | VVStoreError]:
        """Fetch many files in parallel; each result is a FetchResult or the error it met.

        Small pinned files from an asynchronous fsspec source go first, as coroutines on its
        event loop (`cas/smallfiles.py`); everything else, and whatever that path could not
        do, goes through `download` on a pool of threads."""
        requests = list(requests)
        results: list[FetchResult | VVStoreError | None] = [None] * len(requests)
        if len(requests) > 1:
            for i, r in smallfiles.fetch_small(self, requests, jobs or self.in_flight).items():
                results[i] = r
        rest = [i for i, r in enumerate(results) if r is None]

        def one(req: FetchRequest) -> FetchResult | VVStoreError:
            try:
                return self.download(req)
            except VVStoreError as e:
                log.error("%s", e)
                return e

        if rest:
            with ThreadPoolExecutor(max_workers=max(1, min(jobs or self.jobs, len(rest)))) as pool:
                for i, r in zip(rest, pool.map(one, [requests[i] for i in rest]), strict=True):
                    results[i] = r
        done = [r for r in results if r is not None]
        assert len(done) == len(requests)
        return done

    def partials(self) -> list[dict[str, Any]]:
        """Partial downloads in `tmp/` with their resume state (for `vvstore ls --partial`)."""
        return partials.listing(self.store.layout.tmp)

    # --- sources and retries -----------------------------------------------------------------

    def _digest_lock(self, digest: Digest | None) -> Any:
        if digest is None:
            return _nullcontext()
        lock = FileLock(str(self.store.layout.digest_lock(digest)), timeout=self.lock_timeout)
        return _Locked(lock, str(digest))

    def _with_fallback(self, request: FetchRequest) -> FetchResult:
        failures: list[tuple[str, str]] = []
        wrong = 0
        for url in request.sources:
            display = url
            try:
                source = self.open(url)
                display = source.display
                return self._from_source(request, source)
            except IntegrityError as e:
                wrong += 1
                failures.append((display, str(e)))
            except SourceError as e:
                failures.append((display, f"{e.reason} ({e.hint})" if e.hint else e.reason))
            except VVStoreError as e:
                failures.append((display, str(e)))
            except Exception as e:  # any backend's error: recorded, then the next source
                failures.append((display, _describe(e)))
            log.warning("%s: %s failed: %s", request.what, failures[-1][0], failures[-1][1])
        raise sources_failed(request.what, failures, wrong, request.digest)

    def _retrying(self, fn: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return fn()
            except BaseException as e:
                if not isinstance(e, Exception) or not self.retry.should_retry(attempt, e):
                    raise
                delay = self.retry.delay(attempt, retry_after_of(e))
                log.info("transient error (%s); retrying in %.1fs", _describe(e), delay)
                self.sleep(delay)
                attempt += 1

    def _info(self, request: FetchRequest, source: Source) -> SourceInfo:
        """Ask the source about the object, unless the request pins the digest and size of a
        file too small for parallel ranges: its one GET is checked against both anyway, so a
        metadata request (a second round trip per file) would tell nothing new."""
        if (
            request.digest is not None
            and request.size is not None
            and request.size < self.parallel_min
        ):
            known = source.presumed(request.size)
            if known is not None:
                return known
        info: SourceInfo = self._retrying(source.info)
        return info

    def _from_source(self, request: FetchRequest, source: Source) -> FetchResult:
        info = self._info(request, source)
        if info.directory:
            raise SourceError(
                source.display,
                "is a directory, not a file",
                hint="a directory model needs `kind: tree` in the manifest",
            )
        if request.size is not None and info.size is not None and info.size != request.size:
            raise IntegrityError(
                f"{source.display} has {info.size} bytes; {request.what} has {request.size}",
                expected=str(request.size),
                actual=str(info.size),
            )
        sha256 = request.sha256 or info.sha256
        for fresh in (False, True):
            partial, offset = self._claim(request, source, info, fresh)
            try:
                with self._ticker(request.what, info.size, offset) as tick:
                    if partial.state["mode"] == "parts":
                        try:
                            got = self._fetch_parts(source, partial, bool(sha256), tick)
                        except RangeIgnored:
                            log.info(
                                "%s ignored Range requests; fetching it as one stream",
                                source.display,
                            )
                            partial.to_stream()
                            got = self._fetch_stream(source, partial, bool(sha256), tick)
                    else:
                        got = self._fetch_stream(source, partial, bool(sha256), tick)
                digest, size, got_sha = got
                self._check(request, source, partial, digest, size, sha256, got_sha)
                pub: Published = self.store.publish_temp(partial.path, digest, size)
                partial.state_path.unlink(missing_ok=True)
                return FetchResult(
                    request,
                    pub.digest,
                    size,
                    True,
                    info.resolved or source.url,
                    got_sha,
                    offset,
                    new=pub.new,
                )
            except IntegrityError:
                partial.state_path.unlink(missing_ok=True)
                if offset and not fresh:
                    log.warning("resumed bytes of %s were wrong; starting over", request.what)
                    continue
                raise
            except BaseException:
                if partial.state["mode"] == "stream" and partial.empty():
                    partial.discard()  # failed before its first byte: nothing to resume
                raise
            finally:
                partials.release(partial)
        raise AssertionError("unreachable")

    def _check(
        self,
        request: FetchRequest,
        source: Source,
        partial: Partial,
        digest: Digest,
        size: int,
        sha256: str | None,
        got_sha: str | None,
    ) -> None:
        what = f"{request.what} from {source.display}"
        self.store.check(partial.path, digest, size, request.digest, request.size, what)
        if sha256 and got_sha and got_sha != sha256.lower():
            self.store.quarantine(
                partial.path, digest, f"sha256 {got_sha} != source's {sha256} for {what}"
            )
            raise IntegrityError(
                f"sha256 mismatch for {what}: the source says {sha256}, the bytes are {got_sha}",
                expected=sha256,
                actual=got_sha,
            )

    # --- partial files -----------------------------------------------------------------------

    def _key(self, request: FetchRequest, source: Source) -> str:
        if request.digest is not None:
            return request.digest.hex  # same digest, same bytes, whichever source
        return hashlib.sha256(source.url.encode()).hexdigest()[:32]

    def _claim(
        self, request: FetchRequest, source: Source, info: SourceInfo, fresh: bool
    ) -> tuple[Partial, int]:
        """A partial to write this download into: one left behind to resume, or a new one."""
        parallel = bool(
            info.ranges and info.size and info.size >= self.parallel_min and self.jobs > 1
        )
        want = {
            "what": request.what,
            "source": source.display,
            "version": info.version,
            "size": info.size,
            "mode": "parts" if parallel else "stream",
            "part_size": self.part_size,
            "done": [],
            "owner": partials.owner(),
        }
        key = self._key(request, source)
        return partials.claim(self.store.layout.tmp, key, want, request.digest is not None, fresh)

    def _fetch_stream(
        self, source: Source, partial: Partial, want_sha: bool, tick: Progress
    ) -> tuple[Digest, int, str | None]:
        with open(partial.path, "r+b") as f:
            sink = _Sink(f, want_sha)
            sink.absorb_existing()  # re-hash what a previous attempt left: still one pass
            expected = partial.state.get("size")
            if expected is not None and sink.size > expected:  # longer than the object: restart
                sink.reset()

            def pump() -> None:
                try:
                    for chunk in source.read(sink.size) if sink.size else source.read():
                        sink.write(chunk)
                        behind.wrote(len(chunk))
                        tick(len(chunk))
                        failpoint("download.chunk")
                except RangeIgnored:
                    log.info("%s ignored the Range request; restarting from byte 0", source.display)
                    sink.reset()
                    raise _Restart() from None

            with WriteBehind(f.fileno()) as behind:  # the disk works while the network does
                while expected is None or sink.size < expected:  # complete: nothing to read
                    try:
                        self._retrying(pump)
                        break
                    except _Restart:
                        continue
                f.flush()
            os.fsync(f.fileno())
        return sink.hasher.digest(), sink.size, sink.sha.hexdigest() if sink.sha else None

    def _fetch_parts(
        self, source: Source, partial: Partial, want_sha: bool, tick: Progress
    ) -> tuple[Digest, int, str | None]:
        size = int(partial.state["size"])
        ps = int(partial.state["part_size"])
        done = set(partial.state["done"])
        todo = [i for i in range((size + ps - 1) // ps) if i not in done]
        lock = threading.Lock()
        fd = os.open(partial.path, os.O_RDWR)
        try:
            os.ftruncate(fd, size)

            def part(i: int) -> None:
                start, end = i * ps, min(size, (i + 1) * ps)
                pos = start

                def pump() -> None:
                    nonlocal pos
                    for chunk in source.read(pos, end):
                        os.pwrite(fd, chunk, pos)
                        pos += len(chunk)
                        behind.wrote(len(chunk))
                        tick(len(chunk))
                    if pos != end:
                        raise ConnectionError(f"range {start}-{end} ended at {pos}")

                self._retrying(pump)
                with lock:
                    done.add(i)
                    partial.state["done"] = sorted(done)
                    partial.save()
                failpoint("download.part")

            with WriteBehind(fd) as behind, ThreadPoolExecutor(max_workers=self.jobs) as pool:
                for fut in [pool.submit(part, i) for i in todo]:
                    fut.result()
            os.fsync(fd)
        finally:
            os.close(fd)
        digest, n = hash_file(partial.path)  # in order, multi-threaded, from the page cache
        sha = _sha256_file(partial.path) if want_sha else None
        return digest, n, sha

    @contextmanager
    def _ticker(self, what: str, size: int | None, done: int) -> Iterator[Progress]:
        """The callback for one file's bytes: the total's, and the file's own when wanted."""
        total = self.progress
        if self.file_progress is None or size is None:
            yield total or _ignore
            return
        with self.file_progress(what, size, done) as mine:
            if mine is None:
                yield total or _ignore
            elif total is None:
                yield mine
            else:
                add_total = total

                def both(n: int) -> None:
                    add_total(n)
                    mine(n)

                yield both


def _with_connections(
    options: Mapping[str, Mapping[str, Any]], in_flight: int
) -> dict[str, dict[str, Any]]:
    """S3 options allowing as many connections as requests in flight: botocore's default pool
    of 10 otherwise queues the rest (at 100 ms a request, 32 in flight ran like 9). A pool size
    the manifest sets is kept."""
    out = {scheme: dict(opts) for scheme, opts in options.items()}
    for scheme in ("s3", "s3a"):
        opts = out.setdefault(scheme, {})
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("max_pool_connections", max(10, in_flight))
        opts["config_kwargs"] = config
    return out


def sources_failed(
    what: str, failures: list[tuple[str, str]], wrong: int, expected: Digest | None = None
) -> VVStoreError:
    """The error for a thing none of whose sources worked: integrity (5) when every source
    served wrong bytes, else a source failure (6); every reason listed either way."""
    if failures and wrong == len(failures):
        return IntegrityError(
            f"every source of {what} served wrong bytes:"
            + "".join(f"\n  - {u}: {r}" for u, r in failures),
            expected=str(expected) if expected else None,
        )
    return AllSourcesFailedError(what, failures)


class _Sink:
    """A partial file being appended to, with its running BLAKE3 (and sha256 when wanted)."""

    def __init__(self, f: Any, want_sha: bool) -> None:
        self.f, self.want_sha = f, want_sha
        self.reset(truncate=False)

    @property
    def size(self) -> int:
        return self.hasher.size

    def reset(self, truncate: bool = True) -> None:
        self.hasher = Hasher()
        self.sha = hashlib.sha256() if self.want_sha else None
        if truncate:
            self.f.seek(0)
            self.f.truncate()

    def absorb_existing(self) -> None:
        for chunk in _read_file(self.f):
            self._hash(chunk)
        self.f.seek(self.size)
        self.f.truncate()

    def write(self, chunk: bytes) -> None:
        self.f.write(chunk)
        self._hash(chunk)

    def _hash(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        if self.sha:
            self.sha.update(chunk)


class _Restart(Exception):
    transient = False


class _Locked:
    def __init__(self, lock: FileLock, what: str) -> None:
        self.lock, self.what = lock, what

    def __enter__(self) -> None:
        try:
            self.lock.acquire()
        except Timeout:
            raise LockTimeoutError(
                f"timed out waiting for another process fetching {self.what}",
                hint=f"remove {self.lock.lock_file} if no vvstore process is running",
            ) from None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _ignore(n: int) -> None:
    pass


def _read_file(f: Any, chunk: int = 8 << 20) -> Iterator[bytes]:
    f.seek(0)
    while data := f.read(chunk):
        yield data


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in _read_file(f):
            h.update(chunk)
    return h.hexdigest()


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if isinstance(e, VVStoreError) else f"{type(e).__name__}: {text}"
