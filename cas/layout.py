"""Where everything lives in a store. Pure: computes paths, touches nothing.

Example:
    >>> from cas.digest import hash_bytes
    >>> lay = StoreLayout("/s")
    >>> str(lay.blob_path(hash_bytes(b""))).startswith("/s/blobs/blake3/af/1349b9")
    True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .digest import Digest

LAYOUT_VERSION = "1"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by vvstore.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def default_store_root(env: dict[str, str] | None = None) -> Path:
    """`$VVSTORE_HOME`, else `$XDG_CACHE_HOME/vvstore`, else `~/.cache/vvstore`."""
    env = os.environ if env is None else env
    if env.get("VVSTORE_HOME"):
        return Path(env["VVSTORE_HOME"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "vvstore"
    return Path.home() / ".cache" / "vvstore"


@dataclass(frozen=True)
class StoreLayout:
    """The paths of one store rooted at `root`."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root).absolute())

    @property
    def version_file(self) -> Path:
        return self.root / "VERSION"

    @property
    def cachedir_tag(self) -> Path:
        return self.root / "CACHEDIR.TAG"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "blake3"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def roots(self) -> Path:
        return self.root / "roots"

    @property
    def pins(self) -> Path:
        return self.root / "pins"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def index(self) -> Path:
        """Small lookup files: which source URL and version map to which digest."""
        return self.root / "index"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    def directories(self) -> tuple[Path, ...]:
        """Every directory a store has."""
        return (
            self.blobs,
            self.tmp,
            self.roots,
            self.pins,
            self.locks,
            self.quarantine,
            self.index,
        )

    def blob_path(self, digest: Digest) -> Path:
        """`blobs/blake3/ab/cdef…`: sharded by the first two hex characters."""
        return self.blobs / digest.hex[:2] / digest.hex[2:]

    def digest_lock(self, digest: Digest) -> Path:
        return self.locks / f"{digest.hex}.lock"

    def root_entry(self, lockfile: str | os.PathLike[str]) -> Path:
        """The `roots/` file registering one project lockfile (named by a hash of its path)."""
        key = hashlib.sha256(os.fsencode(os.path.abspath(lockfile))).hexdigest()[:32]
        return self.roots / key
