"""Hash, size and version checks on model files, and re-verification of a whole store.

:class:`ModelValidator` answers "are these the bytes, the size, the version I expected?"
with a bool (`check_*`, `is_valid`) or an :class:`~cas.errors.IntegrityError` (`require_*`).
:func:`verify_blobs` re-hashes blobs in parallel and moves each one whose content no longer
matches its name to `quarantine/`.

Example:
    >>> ModelValidator().check_version("1.4.0", ">=1.2,<2")
    True
    >>> ModelValidator().check_version("2024-05-release", "2024-05-release")
    True
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .blobs import BlobStore
from .digest import Digest, Hasher, Progress, hash_file, hash_stream
from .errors import IntegrityError, NotFoundError, UsageError

log = logging.getLogger("vvstore")

PathOrBlob = str | os.PathLike[str] | BinaryIO
T = TypeVar("T")
READ_CHUNK = 1 << 20
_OPERATORS = ("~=", "==", "!=", "<=", ">=", "<", ">", "===")


class HasVersion(Protocol):
    version: str


class ModelValidator:
    """Checks bytes against an expected digest and size, and versions against PEP 440 specs.

    Args:
        threads: hash files with every core (BLAKE3's multi-threaded mmap); turn off when
            several files are hashed at once.
    """

    def __init__(self, *, threads: bool = True) -> None:
        self.threads = threads

    def digest_of(self, path_or_blob: PathOrBlob) -> tuple[Digest, int]:
        """Digest and size of a file path, or of an open binary file from its current position."""
        if isinstance(path_or_blob, (str, os.PathLike)):
            return hash_file(path_or_blob, threads=self.threads)
        return hash_stream(path_or_blob)

    def check_hash(self, path_or_blob: PathOrBlob, expected: Digest | str) -> bool:
        """True when the bytes hash to `expected`; False when they differ or the file is absent."""
        want = _digest(expected)
        try:
            return self.digest_of(path_or_blob)[0] == want
        except FileNotFoundError:
            return False

    def check_size(self, path_or_blob: PathOrBlob, expected: int) -> bool:
        """True when the file (or the rest of an open file) has `expected` bytes."""
        try:
            return _size(path_or_blob) == expected
        except FileNotFoundError:
            return False

    def check_version(
        self, version: str | HasVersion, spec: str, *, prereleases: bool | None = None
    ) -> bool:
        """True when `version` satisfies `spec`: a PEP 440 specifier set (`>=1.2,<2`), or an
        exact version (`1.2` matches `1.2.0`). A version that is not PEP 440 matches only the
        identical string (with or without `==`). An empty spec matches everything.
        Pre-releases match only a spec that names one (as in pip), unless `prereleases`.

        Raises:
            UsageError: `spec` starts with an operator but is not a valid specifier.
        """
        v = version if isinstance(version, str) else version.version
        spec = spec.strip()
        if not spec:
            return True
        if not spec.startswith(_OPERATORS):
            spec = f"=={spec}"
        try:
            parsed = Version(v)
        except InvalidVersion:
            return spec.lstrip("=").strip() == v
        try:
            specs = SpecifierSet(spec)
            allow = bool(specs.prereleases) if prereleases is None else prereleases
            return specs.contains(parsed, prereleases=allow)
        except InvalidSpecifier:
            if "," not in spec and spec.startswith("=="):  # a non-PEP 440 exact version
                return spec[2:].strip() == v
            raise UsageError(
                f"invalid version specifier {spec!r}", hint="use PEP 440, e.g. '>=1.2,<2'"
            ) from None

    def is_valid(
        self,
        path: PathOrBlob,
        digest: Digest | str | None = None,
        size: int | None = None,
        version: str | HasVersion | None = None,
        spec: str | None = None,
    ) -> bool:
        """Every given check passes: version against spec first, then size, then the hash."""
        if version is not None and spec is not None and not self.check_version(version, spec):
            return False
        if size is not None and not self.check_size(path, size):
            return False
        return digest is None or self.check_hash(path, digest)

    def require_hash(self, path_or_blob: PathOrBlob, expected: Digest | str) -> Digest:
        """The digest, when it is `expected`; else :class:`IntegrityError` (exit 5)."""
        want = _digest(expected)
        got, _ = _existing(self.digest_of, path_or_blob)
        if got != want:
            raise IntegrityError.mismatch("digest", f" for {_label(path_or_blob)}", want, got)
        return got

    def require_size(self, path_or_blob: PathOrBlob, expected: int) -> int:
        """The size, when it is `expected`; else :class:`IntegrityError` (exit 5)."""
        got = _existing(_size, path_or_blob)
        if got != expected:
            raise IntegrityError.mismatch("size", f" for {_label(path_or_blob)}", expected, got)
        return got


def _digest(value: Digest | str) -> Digest:
    return value if isinstance(value, Digest) else Digest.parse(value)


def _size(path_or_blob: PathOrBlob) -> int:
    if isinstance(path_or_blob, (str, os.PathLike)):
        return os.path.getsize(path_or_blob)
    f = path_or_blob
    start = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(start)
    return end - start


def _existing(fn: Callable[[PathOrBlob], T], path_or_blob: PathOrBlob) -> T:
    try:
        return fn(path_or_blob)
    except FileNotFoundError:
        raise NotFoundError(f"{_label(path_or_blob)}: no such file") from None


def _label(path_or_blob: PathOrBlob) -> str:
    if isinstance(path_or_blob, (str, os.PathLike)):
        return os.fspath(path_or_blob)
    return str(getattr(path_or_blob, "name", "stream"))


# --- the whole store -----------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What :func:`verify_blobs` found: `bad` holds (name, actual digest) per quarantined blob."""

    checked: int = 0
    bytes: int = 0
    bad: list[tuple[Digest, Digest]] = field(default_factory=list)
    missing: list[Digest] = field(default_factory=list)
    errors: list[tuple[Digest, str]] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.bad or self.missing or self.errors)


def verify_blobs(
    store: BlobStore,
    digests: Iterable[Digest] | None = None,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Re-hash blobs (all, or `digests`) and quarantine each whose bytes do not match its name.

    With one job or one blob, each blob is hashed with every core (BLAKE3's threaded mmap).
    Otherwise `jobs` threads (default: one per CPU) hash one blob each on one core, largest
    first, reading into a reused buffer; BLAKE3 releases the GIL, and one core per file keeps
    the threads from oversubscribing the machine. `progress(nbytes)` is called from this
    thread after each blob. A requested digest that is absent is `missing`; a blob that gc
    removes during a full scan is skipped.
    """
    report = VerifyReport()
    requested = digests is not None
    if digests is None:
        todo = [(b.size, b.digest) for b in store.iter_blobs()]
    else:
        todo = []
        for d in dict.fromkeys(digests):
            try:
                st = os.lstat(store.path(d))
            except FileNotFoundError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):  # a symlink is never a blob
                report.missing.append(d)
            else:
                todo.append((st.st_size, d))
    jobs = max(1, jobs or os.cpu_count() or 1)
    if jobs == 1 or len(todo) <= 1:
        for _, d in todo:
            _record(store, report, d, _hash_blob(store, d, True), requested, progress)
        return report
    todo.sort(key=lambda t: t[0], reverse=True)  # largest first: the threads finish together
    with ThreadPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
        futures = {pool.submit(_hash_blob, store, d, False): d for _, d in todo}
        for fut in as_completed(futures):
            _record(store, report, futures[fut], fut.result(), requested, progress)
    return report


_Result = tuple[Digest, int, int] | OSError


def _hash_blob(store: BlobStore, digest: Digest, threads: bool) -> _Result:
    """(actual digest, size, inode) of a blob, or the OSError that stopped the read."""
    path = store.path(digest)
    try:
        ino = os.lstat(path).st_ino
        actual, size = hash_file(path) if threads else _hash_read(path)
        return actual, size, ino
    except OSError as e:
        return e


_buffers = threading.local()


def _hash_read(path: Path) -> tuple[Digest, int]:
    """One core, plain reads into a reused buffer: for many small files at once this beats
    mmap (whose page faults and unmaps contend between threads) by about three times."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(READ_CHUNK)
    view, h = memoryview(buf), Hasher()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # never out of the store
    with open(fd, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.digest(), h.size


def _record(
    store: BlobStore,
    report: VerifyReport,
    digest: Digest,
    result: _Result,
    requested: bool,
    progress: Progress | None,
) -> None:
    if isinstance(result, FileNotFoundError):
        if requested:
            report.missing.append(digest)
        return
    if isinstance(result, OSError):
        log.warning("cannot read blob %s: %s", digest, result)
        report.errors.append((digest, str(result)))
        return
    actual, size, ino = result
    report.checked += 1
    report.bytes += size
    if progress:
        progress(size)
    if actual == digest:
        return
    path = store.path(digest)
    # a repair may have replaced the blob since it was hashed: move only the inode we read
    # (should one slip in between, the worst case is a missing blob, never a wrong one)
    try:
        replaced = os.lstat(path).st_ino != ino
    except FileNotFoundError:
        replaced = True
    if replaced:
        log.info("blob %s was replaced or removed while being verified; left alone", digest)
        return
    reason = f"blob {digest} holds content {actual} (found by verify)"
    report.quarantined.append(store.quarantine(path, actual, reason))
    report.bad.append((digest, actual))
