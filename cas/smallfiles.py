"""Many small pinned files from asynchronous fsspec sources, as coroutines on their loop.

A model of thousands of small files is bound by round trips, not bytes. Sending each through
a worker thread that hands its request to fsspec's event loop and waits costs more CPU per
file than the request itself (on 2 cores, 10 CPU-seconds for 2,000 files of 256 KiB, where
s3fs's own `get` used 4). Here each file is one coroutine on the loop: one GET (no HEAD: the
digest and size are pinned), then its bytes are checked and published by a small thread pool
(hash, fsync, rename). Many requests stay in flight for the price of none.

Only what can gain takes this path: a request whose digest and size are known, smaller than
`SMALL`, not yet present, with no sha256 to cross-check, whose first source is an
asynchronous fsspec filesystem that needs no metadata request (`Source.presumed`). Anything
else, and anything that goes wrong here (an error, wrong bytes, the per-digest lock held by
another process), is left to the downloader's ordinary path, which retries, falls back
across sources, quarantines and reports; this path only ever publishes verified bytes.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from .digest import hash_bytes
from .sources import FsspecSource

if TYPE_CHECKING:
    from .download import FetchRequest, FetchResult, ModelDownloader

log = logging.getLogger("vvstore")
SMALL = 1 << 20  # held in memory whole, at most `jobs` at once: 64 MiB at the most
PUBLISHERS = 4  # threads that hash, fsync and publish what arrived


def default_jobs(cpus: int) -> int:
    """Requests in flight: coroutines cost no thread, so many more than transfers by thread."""
    return min(64, max(16, 16 * cpus))


def fetch_small(
    dl: ModelDownloader, requests: list[FetchRequest], jobs: int
) -> dict[int, FetchResult]:
    """Fetch what qualifies among `requests`; returns results by index (the rest: not done)."""
    picked: dict[Any, list[tuple[int, FetchRequest, FsspecSource]]] = {}
    for i, req in enumerate(requests):
        source = _qualifies(dl, req)
        if source is not None:
            picked.setdefault(source.fs.loop, []).append((i, req, source))
    if not picked:
        return {}
    done: dict[int, FetchResult] = {}
    with ThreadPoolExecutor(PUBLISHERS, thread_name_prefix="vvstore-publish") as pool:
        for loop, items in picked.items():
            if _running_here(loop):
                continue  # called from that loop's own thread: waiting on it would deadlock
            future = asyncio.run_coroutine_threadsafe(_all(dl, items, jobs, pool), loop)
            done.update(future.result())
    log.info("%d of %d small files fetched on the event loop", len(done), len(requests))
    return done


def _running_here(loop: Any) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _qualifies(dl: ModelDownloader, req: FetchRequest) -> FsspecSource | None:
    if req.digest is None or req.size is None or req.size >= SMALL or req.sha256:
        return None
    if not req.sources or dl.store.has(req.digest):
        return None
    try:
        source = dl.open(req.sources[0])
    except Exception:  # noqa: BLE001 - the ordinary path reports it
        return None
    if not isinstance(source, FsspecSource) or source.presumed(req.size) is None:
        return None
    try:
        fs = source.fs
    except Exception:  # noqa: BLE001 - a backend that cannot load: the ordinary path says why
        return None
    return source if getattr(fs, "async_impl", False) and hasattr(fs, "_cat_file") else None


async def _all(
    dl: ModelDownloader,
    items: list[tuple[int, FetchRequest, FsspecSource]],
    jobs: int,
    pool: ThreadPoolExecutor,
) -> dict[int, FetchResult]:
    gate = asyncio.Semaphore(jobs)
    loop = asyncio.get_running_loop()

    async def one(i: int, req: FetchRequest, source: FsspecSource) -> tuple[int, Any]:
        async with gate:
            lock = FileLock(str(dl.store.layout.digest_lock(req.digest)), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                return i, None  # another process is on it: the ordinary path waits for it
            try:
                data = await _get(source)
                result = await loop.run_in_executor(pool, _publish, dl, req, source, data)
            except Exception as e:  # noqa: BLE001 - retried, and reported, by the ordinary path
                log.info("%s: %s; retrying the ordinary way", req.what, e)
                result = None
            finally:
                lock.release()
            return i, result

    pairs = await asyncio.gather(*(one(*item) for item in items))
    return {i: r for i, r in pairs if r is not None}


async def _get(source: FsspecSource) -> bytes:
    """One GET of the whole object (s3fs would send a HEAD first without max_concurrency=1)."""
    fs = source.fs
    if source.scheme in ("s3", "s3a"):
        data = await fs._cat_file(source.path, max_concurrency=1)
    else:
        data = await fs._cat_file(source.path)
    return bytes(data)


def _publish(
    dl: ModelDownloader, req: FetchRequest, source: FsspecSource, data: bytes
) -> FetchResult | None:
    """Check the bytes and publish them; None (ordinary path) when they are not the pinned ones,
    so wrong bytes are quarantined there, with their source named."""
    from .download import FetchResult

    assert req.digest is not None
    if len(data) != req.size or hash_bytes(data) != req.digest:
        log.info("%s from %s: not the pinned bytes", req.what, source.display)
        return None
    pub = dl.store.publish_bytes(data, expected=req.digest)
    if dl.progress:
        dl.progress(len(data))
    return FetchResult(req, pub.digest, len(data), True, source.url, None, 0, new=pub.new)
