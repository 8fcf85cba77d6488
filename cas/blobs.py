"""The blob directory: publish, has, path, open, freshen, delete, iterate.

A blob appears in `blobs/` only by `os.replace` from `tmp/`, after its bytes were hashed,
checked against any expected digest and size, and fsynced. Blobs are read-only (0444).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from .atomic import WriteBehind, atomic_write, fsync_dir, temp_file
from .audit import AuditLog
from .digest import Digest, Hasher, Progress, hash_file
from .errors import BlobNotFoundError, IntegrityError, StoreFormatError
from .failpoints import failpoint
from .layout import CACHEDIR_TAG, LAYOUT_VERSION, StoreLayout, default_store_root

log = logging.getLogger("vvstore")

LinkMode = Literal["copy", "reflink", "hardlink"]
LINK_MODES: tuple[str, ...] = ("copy", "reflink", "hardlink")
COPY_STEP = 64 << 20  # one copy_file_range call
HASH_CHUNK = 1 << 20
COPY_CHUNK = 1 << 20  # stays in CPU cache between read, hash and write (8 MiB ran ~2x slower)
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


@dataclass(frozen=True)
class BlobStat:
    """One blob as found on disk."""

    digest: Digest
    size: int
    mtime: float


@dataclass(frozen=True)
class Published:
    """What a publish did: the digest, the size, whether it was new, and how it was linked."""

    digest: Digest
    size: int
    new: bool
    link: str


class BlobWriter:
    """Bytes written here are hashed on the way into a private temp file in `tmp/`.

    `commit()` checks the expected digest and size, fsyncs and publishes; wrong bytes go to
    `quarantine/` and raise :class:`IntegrityError`. `abort()` removes the temp file.
    """

    def __init__(self, store: BlobStore, f: BinaryIO, path: Path) -> None:
        self._store = store
        self._f = f
        self.path = path
        self.hasher = Hasher()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.hasher.update(data)
        self._f.write(data)

    def commit(
        self, expected: Digest | None = None, expected_size: int | None = None, what: str = ""
    ) -> Published:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        digest, size = self.hasher.digest(), self.hasher.size
        self._store.check(self.path, digest, size, expected, expected_size, what)
        return self._store.publish_temp(self.path, digest, size)

    def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


_SKELETON = {"blobs", "tmp", "roots", "pins", "locks", "quarantine", "index", "CACHEDIR.TAG"}


def _only_skeleton(root: Path) -> bool:
    """Only what `_create` makes: a creation in progress elsewhere, or one cut short."""
    return all(e.name in _SKELETON for e in root.iterdir())


class BlobStore:
    """A store directory. Created on first use; one of an unknown layout version is refused."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.layout = StoreLayout(root if root is not None else default_store_root())
        self.audit = AuditLog(self.layout.audit_log)
        self._open(create)

    @property
    def root(self) -> Path:
        return self.layout.root

    def _open(self, create: bool) -> None:
        lay = self.layout
        version = self._version()
        if version is None and lay.root.is_dir() and not _only_skeleton(lay.root):
            # another process may have finished creating it since the first look
            version = self._version()
            if version is None:
                raise StoreFormatError(
                    f"{lay.root} is not empty and has no VERSION file: not a vvstore store",
                    hint="point --store or VVSTORE_HOME at an empty or new directory",
                )
        if version is None:
            if not create:
                raise StoreFormatError(f"no store at {lay.root}")
            self._create()
        elif version != LAYOUT_VERSION:
            raise StoreFormatError(
                f"store {lay.root} has layout version {version!r}; this vvstore knows only "
                f"{LAYOUT_VERSION!r}",
                hint="upgrade vvstore, or use another --store",
            )
        else:
            for d in lay.directories():  # tolerate a store whose empty dirs were pruned
                d.mkdir(parents=True, exist_ok=True)

    def _version(self) -> str | None:
        try:
            return self.layout.version_file.read_text().strip()
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            root = self.layout.root
            raise StoreFormatError(f"store path {root} is a file, not a directory") from None

    def _create(self) -> None:
        lay = self.layout
        for d in lay.directories():
            d.mkdir(parents=True, exist_ok=True)
        # temp files in tmp/: a creation cut short leaves its debris there, nowhere else
        atomic_write(lay.cachedir_tag, CACHEDIR_TAG.encode(), tmp_dir=lay.tmp)
        atomic_write(
            lay.version_file, f"{LAYOUT_VERSION}\n".encode(), tmp_dir=lay.tmp
        )  # last: marks it complete

    # --- reading -----------------------------------------------------------------------------

    def path(self, digest: Digest) -> Path:
        """Where the blob lives (present or not)."""
        return self.layout.blob_path(digest)

    def has(self, digest: Digest) -> bool:
        """True when a regular file is present under the digest, reached through no symlink."""
        path = self.path(digest)
        try:
            return (
                stat.S_ISREG(os.lstat(path).st_mode)
                and stat.S_ISDIR(os.lstat(path.parent).st_mode)
                and stat.S_ISDIR(os.lstat(self.layout.blobs).st_mode)
            )
        except OSError:
            return False

    def require(self, digest: Digest) -> Path:
        """The blob's path, freshened; :class:`BlobNotFoundError` when absent."""
        if not self.freshen(digest):
            raise BlobNotFoundError(str(digest), hint="run `vvstore fetch` to get it")
        return self.path(digest)

    def open(self, digest: Digest) -> BinaryIO:
        """A read-only file object on the blob; freshens its last use. Never follows a symlink."""
        path = self.require(digest)
        # open() with an opener keeps `.name` the blob's path (fsspec.open_local reads it)
        return open(path, "rb", opener=_open_nofollow)

    def freshen(self, digest: Digest) -> bool:
        """Mark the blob used now (its mtime). False if it is absent."""
        if not self.has(digest):
            return False
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:  # collected between has() and utime()
            return False
        return True

    def iter_blobs(self) -> Iterator[BlobStat]:
        """Every blob: digest, size, mtime. Foreign files in `blobs/` are ignored."""
        try:
            shards = list(os.scandir(self.layout.blobs))
        except FileNotFoundError:
            return
        for shard in shards:
            if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                if not entry.is_file(follow_symlinks=False):
                    continue
                hexd = shard.name + entry.name
                if not Digest.is_digest("blake3:" + hexd):
                    continue
                st = entry.stat(follow_symlinks=False)
                yield BlobStat(Digest(hexd), st.st_size, st.st_mtime)

    # --- writing -----------------------------------------------------------------------------

    def writer(self) -> _WriterContext:
        """`with store.writer() as w: w.write(...)`, then `w.commit(...)`."""
        return _WriterContext(self)

    def check(
        self,
        tmp: Path,
        digest: Digest,
        size: int,
        expected: Digest | None,
        expected_size: int | None,
        what: str = "",
    ) -> None:
        """Raise :class:`IntegrityError` (after quarantining `tmp`) when the bytes are wrong."""
        label = f" for {what}" if what else ""
        if expected_size is not None and size != expected_size:
            self.quarantine(tmp, digest, f"size {size} != expected {expected_size}{label}")
            raise IntegrityError.mismatch("size", label, expected_size, size)
        if expected is not None and digest != expected:
            self.quarantine(tmp, digest, f"digest {digest} != expected {expected}{label}")
            raise IntegrityError.mismatch("digest", label, expected, digest)

    def publish_temp(self, tmp: Path, digest: Digest, size: int) -> Published:
        """Move a verified, fsynced temp file into place, read-only; if present, freshen it."""
        dest = self.path(digest)
        if self.freshen(digest):
            tmp.unlink(missing_ok=True)
            return Published(digest, size, False, "copy")
        os.chmod(tmp, 0o444)
        os.utime(tmp)  # last use is now, never the source's mtime (a hardlink carries it)
        dest.parent.mkdir(parents=True, exist_ok=True)
        failpoint("blob.before_rename")
        os.replace(tmp, dest)  # atomic: a reader sees no blob or the whole blob
        fsync_dir(dest.parent)
        failpoint("blob.after_rename")
        self.audit.record("publish", digest=digest, size=size)
        return Published(digest, size, True, "copy")

    def publish_file(
        self,
        src: str | os.PathLike[str],
        *,
        link: LinkMode = "copy",
        expected: Digest | None = None,
        progress: Progress | None = None,
    ) -> Published:
        """Store a local file by copy (hashing while copying), reflink or hardlink."""
        if link == "hardlink":
            result = self._try_hardlink(Path(src), expected)
            if result:
                return result
        elif link == "reflink":
            result = self._try_reflink(Path(src), expected)
            if result:
                return result
        with open(src, "rb") as f, self.writer() as w:
            if not copy_file_hashed(f, w, progress):
                copy_stream(f, w, progress)
            return w.commit(expected, what=os.fspath(src))

    def publish_bytes(self, data: bytes, expected: Digest | None = None) -> Published:
        """Store an in-memory byte string (trees, small documents)."""
        with self.writer() as w:
            w.write(data)
            return w.commit(expected)

    def _try_reflink(self, src: Path, expected: Digest | None) -> Published | None:
        import fcntl

        with open(src, "rb") as s, temp_file(self.layout.tmp) as (tmp, f):
            try:
                fcntl.ioctl(f.fileno(), FICLONE, s.fileno())
            except OSError as e:
                log.warning("reflink not supported here (%s); copying %s instead", e.strerror, src)
                tmp.unlink()
                return None
            os.fsync(f.fileno())
        return self._publish_hashed(tmp, expected, str(src), "reflink")

    def _try_hardlink(self, src: Path, expected: Digest | None) -> Published | None:
        tmp = self.layout.tmp / f"{os.getpid()}.{os.urandom(6).hex()}.link"
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            log.warning("cannot hardlink %s into the store (%s); copying instead", src, e.strerror)
            return None
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        os.chmod(tmp, 0o444)  # same inode: the user's file becomes read-only too (documented)
        try:
            result = self._publish_hashed(tmp, expected, str(src), "hardlink")
        except BaseException:
            os.chmod(src, mode)
            raise
        if not result.new:
            os.chmod(src, mode)  # an equal blob existed; the user's file was not linked
        return result

    def _publish_hashed(self, tmp: Path, expected: Digest | None, what: str, how: str) -> Published:
        try:
            digest, size = hash_file(tmp)
            self.check(tmp, digest, size, expected, None, what)
            result = self.publish_temp(tmp, digest, size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Published(result.digest, result.size, result.new, how if result.new else "copy")

    # --- removing ----------------------------------------------------------------------------

    def delete(self, digest: Digest) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def quarantine(self, tmp: Path, digest: Digest, reason: str) -> Path:
        """Keep wrong bytes for inspection, out of `blobs/`, with a note of why."""
        dest = self.layout.quarantine / f"{digest.hex}.{os.getpid()}.{os.urandom(4).hex()}"
        os.replace(tmp, dest)
        atomic_write(dest.parent / f"{dest.name}.reason", (reason + "\n").encode())
        self.audit.record("quarantine", outcome="failed", digest=digest, reason=reason)
        return dest


def _open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


class _WriterContext:
    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._cm = temp_file(store.layout.tmp, prefix="blob.")

    def __enter__(self) -> BlobWriter:
        path, f = self._cm.__enter__()
        self._writer = BlobWriter(self._store, f, path)
        return self._writer

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._writer.abort()
        self._cm.__exit__(None, None, None)


def copy_file_hashed(src: BinaryIO, w: BlobWriter, progress: Progress | None = None) -> bool:
    """Copy a regular file in the kernel (copy_file_range) while a second thread hashes each
    copied range *as written* (read back from the page cache), starting write-back early.

    False, with nothing written, where the kernel cannot copy (another filesystem type, an
    old kernel, not a regular file): the caller then streams.
    """
    if not hasattr(os, "copy_file_range") or not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
        return False
    w._f.flush()
    sfd, dfd = src.fileno(), w._f.fileno()
    ranges: queue.Queue[tuple[int, int] | None] = queue.Queue(maxsize=8)
    failed: list[BaseException] = []

    def hash_ranges() -> None:
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        try:
            while (item := ranges.get()) is not None:
                off, end = item
                while off < end:
                    n = os.preadv(dfd, [view[: min(HASH_CHUNK, end - off)]], off)
                    if n <= 0:
                        raise OSError(f"short read of the temp file at {off}")
                    w.hasher.update(view[:n])
                    off += n
        except BaseException as e:  # re-raised by the copying thread below
            failed.append(e)
            while ranges.get() is not None:  # drain, so the producer never blocks
                pass

    pos = 0
    worker = threading.Thread(target=hash_ranges, name="vvstore-hash", daemon=True)
    try:
        n = os.copy_file_range(sfd, dfd, COPY_STEP, 0, 0)
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
            return False
        raise
    worker.start()
    try:
        with WriteBehind(dfd) as behind:  # write-back starts now, not all at the final fsync
            while n:
                ranges.put((pos, pos + n))
                pos += n
                behind.wrote(n)
                if progress:
                    progress(n)
                n = os.copy_file_range(sfd, dfd, COPY_STEP, pos, pos)
    finally:
        ranges.put(None)
        worker.join()
    if failed:
        raise failed[0]
    w._f.seek(pos)
    return True


def copy_stream(src: BinaryIO, w: BlobWriter, progress: Progress | None = None) -> None:
    """Copy `src` into a writer in large chunks, reusing one buffer (flat memory)."""
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    readinto = getattr(src, "readinto", None)
    while True:
        if readinto:
            n = readinto(buf)
            if not n:
                break
            w.write(view[:n])
        else:
            data = src.read(COPY_CHUNK)
            if not data:
                break
            n = len(data)
            w.write(data)
        if progress:
            progress(n)
