"""Digests (`blake3:<64 hex>`) and BLAKE3 hashing of streams and files. Pure apart from reads.

Example:
    >>> empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    >>> d = Digest.parse("blake3:" + empty)
    >>> d == hash_bytes(b"")
    True
    >>> d.short
    'blake3:af1349b9f5f9'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

import blake3

from .errors import UsageError

ALGORITHM = "blake3"
HEX_LEN = 64
CHUNK = 4 << 20  # streaming chunk: well above blake3's 2 KiB GIL-release threshold
_DIGEST_RE = re.compile(r"blake3:[0-9a-f]{64}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int], object]


class InvalidDigestError(UsageError):
    """A string that is not a `blake3:<64 lowercase hex>` digest."""

    def __init__(self, value: str) -> None:
        super().__init__(
            f"invalid digest {value!r}: expected 'blake3:' followed by 64 lowercase hex characters"
        )
        self.value = value


@dataclass(frozen=True, order=True)
class Digest:
    """A BLAKE3 digest; `str()` gives the canonical `blake3:<hex>` form."""

    hex: str

    def __post_init__(self) -> None:
        if not _HEX_RE.fullmatch(self.hex):
            raise InvalidDigestError(self.hex)

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse `blake3:<hex>`; anything else raises :class:`InvalidDigestError`."""
        if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
            raise InvalidDigestError(str(value))
        return cls(value[len(ALGORITHM) + 1 :])

    @staticmethod
    def is_digest(value: str) -> bool:
        """True when `value` is a well-formed digest string."""
        return bool(_DIGEST_RE.fullmatch(value))

    @property
    def short(self) -> str:
        """`blake3:` plus the first 12 hex characters, for people."""
        return f"{ALGORITHM}:{self.hex[:12]}"

    def __str__(self) -> str:
        return f"{ALGORITHM}:{self.hex}"


class Hasher:
    """Incremental BLAKE3 that also counts bytes."""

    def __init__(self) -> None:
        self._h = blake3.blake3()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self._h.hexdigest())


def hash_bytes(data: bytes) -> Digest:
    """Digest of an in-memory byte string."""
    return Digest(blake3.blake3(data).hexdigest())


def hash_chunks(chunks: Iterable[bytes]) -> tuple[Digest, int]:
    """Digest and total size of an iterable of byte chunks."""
    h = Hasher()
    for chunk in chunks:
        h.update(chunk)
    return h.digest(), h.size


def hash_stream(
    stream: BinaryIO, progress: Progress | None = None, chunk: int = CHUNK
) -> tuple[Digest, int]:
    """Digest and size of a readable binary stream, read in `chunk`-byte pieces."""
    h = Hasher()
    while data := stream.read(chunk):
        h.update(data)
        if progress:
            progress(len(data))
    return h.digest(), h.size


FILE_CHUNK = 16 << 20  # large enough for blake3 to spread one update() over every core


def hash_file(path: str | os.PathLike[str], *, threads: bool = True) -> tuple[Digest, int]:
    """Digest and size of a file, multi-threaded, through one reused buffer.

    Not mmap: mapped pages count towards the process's resident memory, so hashing a
    large file that way looks like (and, under memory limits, is) a spike.
    """
    h = blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)
    buf = bytearray(FILE_CHUNK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return Digest(h.hexdigest()), size
