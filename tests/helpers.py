"""Helpers the test files share: reproducible payloads, checks on a store's blobs, and the
environment of a `vvstore` subprocess."""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import blake3

from cas.blobs import BlobStore


@functools.cache
def payload(n: int, seed: int = 0) -> bytes:
    """`n` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def _root(store: Path | BlobStore) -> Path:
    return store.root if isinstance(store, BlobStore) else store


def blob_files(store: Path | BlobStore) -> list[Path]:
    """Every file under the store's blobs/."""
    return sorted(p for p in (_root(store) / "blobs").rglob("*") if p.is_file())


def assert_blobs_sound(store: Path | BlobStore) -> None:
    """Nothing wrong in blobs/: every file hashes (BLAKE3, re-read from disk) to its name."""
    for p in blob_files(store):
        assert blake3.blake3(p.read_bytes()).hexdigest() == p.parent.name + p.name, p


def has_blob(store: Path | BlobStore, data: bytes) -> bool:
    """True when the store holds `data`, intact, under its digest."""
    h = blake3.blake3(data).hexdigest()
    p = _root(store) / "blobs" / "blake3" / h[:2] / h[2:]
    return p.is_file() and blake3.blake3(p.read_bytes()).hexdigest() == h


def tmp_leftovers(store: Path | BlobStore) -> list[str]:
    """Names left in the store's tmp/."""
    return sorted(p.name for p in (_root(store) / "tmp").iterdir())


def cli_env(store: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a `vvstore` subprocess using `store`: this one's, with loopback
    kept off any proxy, no failpoints and no AWS profile inherited; `extra` on top."""
    env = {
        **os.environ,
        "VVSTORE_HOME": str(store),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for name in ("VVSTORE_FAILPOINTS", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        env.pop(name, None)
    return env | extra
