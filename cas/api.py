"""Python conveniences mirroring `vvstore cat` and `vvstore path`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

from .manager import DefaultModelManager
from .sources import scheme_of


def open(
    ref_or_url: str,
    mode: str = "rb",
    *,
    project: str | os.PathLike[str] | None = None,
    store: str | None = None,
) -> BinaryIO:
    """A read-only file object on a model's bytes.

    `ref_or_url` is a ref (`name@version[/file]`, `name[/file]`, `blake3:<hex>`), a
    `vvstore://` URL, or any other fsspec URL, which is then cached content-addressed through
    `vvcache::` (downloaded once, verified, deduplicated).
    """
    if mode != "rb":
        raise PermissionError("vvstore opens models read-only (mode 'rb')")
    scheme = scheme_of(ref_or_url)
    if scheme == "vvstore":
        from .fs import VVStoreFileSystem

        fs: Any = VVStoreFileSystem(project=os.fspath(project) if project else None, store=store)
        return fs._open(ref_or_url)
    if scheme != "file" or "://" in ref_or_url:
        from .sources import filesystem
        from .vvcache import VVCacheFileSystem

        cache = VVCacheFileSystem(fs=filesystem(scheme, {}), target_protocol=scheme, store=store)
        return cache._open(ref_or_url)
    return DefaultModelManager(project, store).open(ref_or_url)


def path(
    ref: str, *, project: str | os.PathLike[str] | None = None, store: str | None = None
) -> Path:
    """The local path of a ref's blob (read-only), for libraries that want a path."""
    return DefaultModelManager(project, store).path(ref)
