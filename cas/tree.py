"""Trees: a multi-file model as a canonical JSON document, stored as a blob itself. Pure.

The document lists every file's relative path, digest and size, sorted by path, encoded
compactly, so identical directories always give identical bytes and so one tree digest.

Example:
    >>> from cas.digest import hash_bytes
    >>> t = Tree.from_entries([TreeEntry("b.txt", str(hash_bytes(b"b")), 1)])
    >>> Tree.decode(t.encode()) == t
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec

from .errors import IntegrityError, UsageError
from .names import validate_relpath

DigestStr = Annotated[str, msgspec.Meta(pattern=r"^blake3:[0-9a-f]{64}$")]
TREE_TYPE = "vvstore-tree"


class TreeEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One file of a tree."""

    path: str
    digest: DigestStr
    size: Annotated[int, msgspec.Meta(ge=0)]


class Tree(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A canonical, sorted list of files."""

    files: tuple[TreeEntry, ...]
    type: Literal["vvstore-tree"] = TREE_TYPE
    version: Literal[1] = 1

    @classmethod
    def from_entries(cls, entries: Iterable[TreeEntry]) -> Tree:
        """Validate paths, refuse duplicates, sort."""
        files = sorted(entries, key=lambda e: e.path)
        for i, entry in enumerate(files):
            validate_relpath(entry.path)
            if i and files[i - 1].path == entry.path:
                raise UsageError(f"duplicate path {entry.path!r} in tree")
        return cls(files=tuple(files))

    def encode(self) -> bytes:
        """The canonical bytes (field order fixed by the struct, files sorted)."""
        doc = {"type": self.type, "version": self.version, "files": self.files}
        return msgspec.json.encode(doc)

    @classmethod
    def decode(cls, data: bytes, what: str = "tree") -> Tree:
        """Parse and re-validate a tree document; a bad one raises :class:`IntegrityError`."""
        try:
            tree = msgspec.json.decode(data, type=cls)
            return cls.from_entries(tree.files)
        except (msgspec.DecodeError, ValueError) as e:
            raise IntegrityError(f"{what} is not a valid vvstore tree: {e}") from None

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        return sum(e.size for e in self.files)

    def get(self, path: str) -> TreeEntry | None:
        """The entry for `path`, or None."""
        for entry in self.files:
            if entry.path == path:
                return entry
        return None
