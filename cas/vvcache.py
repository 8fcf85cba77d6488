"""`vvcache::` — the store as a content-addressed cache layer under any fsspec URL.

`fsspec.open("vvcache::s3://bucket/model.bin")` downloads once into the store (verified,
deduplicated with every other blob) and serves later opens from it. A small index in the
store (`index/vvcache/`) maps each source URL and the version the source reported (ETag, HF
blob id, mtime) to a digest; when the version changes the object is fetched again. fsspec's
own `simplecache::` and `filecache::` key files by URL and never by content.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fsspec.implementations.chained import ChainedFileSystem

from .atomic import atomic_write
from .blobs import BlobStore
from .digest import Digest
from .download import FetchRequest, ModelDownloader
from .redact import redact_url, strip_credentials
from .sources import FsspecSource, filesystem

READ_ONLY = "vvcache:: is read-only: it caches what the target URL holds"


class VVCacheFileSystem(ChainedFileSystem):
    """Reads through to a target filesystem, keeping every object once in the store."""

    protocol = ("vvcache",)
    local_file = True  # opens return the blob itself, so open_local gives its path

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fs: Any = None,
        store: str | None = None,
        fo: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target = (
            fs if fs is not None else filesystem(target_protocol or "file", target_options or {})
        )
        proto = target_protocol or self.target.protocol
        self.target_protocol = proto if isinstance(proto, str) else proto[0]
        self.blobs = BlobStore(store)

    def _url(self, path: str) -> str:
        stripped = self.target._strip_protocol(path)
        return (
            stripped if "://" in stripped else f"{self.target_protocol}://{stripped}"
        )  # http keeps it

    def _index_path(self, url: str) -> Any:
        key = hashlib.sha256(strip_credentials(url).encode()).hexdigest()[:40]
        return self.blobs.layout.index / "vvcache" / f"{key}.json"

    def cached(self, path: str) -> Digest:
        """The digest of the object at `path`, fetching it into the store if needed."""
        url = self._url(path)
        source = FsspecSource(url, self.target_protocol, _fs=self.target)
        info = source.info()
        index = self._index_path(url)
        expected = None
        try:
            entry = json.loads(index.read_text())
            if entry.get("version") == info.version and entry.get("size") == info.size:
                expected = Digest.parse(entry["digest"])
                if self.blobs.freshen(expected):
                    return expected
        except (OSError, ValueError, KeyError):
            pass  # no index entry yet, or an unreadable one: fetch and write it anew
        dl = ModelDownloader(self.blobs, opener=lambda *a, **k: source)
        result = dl.download(FetchRequest(redact_url(url), [url], expected, info.size, info.sha256))
        doc = {
            "url": strip_credentials(url),
            "version": info.version,
            "size": result.size,
            "digest": str(result.digest),
        }
        atomic_write(index, json.dumps(doc, sort_keys=True).encode())
        return result.digest

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(READ_ONLY)
        return self.blobs.open(self.cached(path))

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        with self._open(path) as f:
            f.seek(start or 0)
            return f.read() if end is None else f.read(max(0, end - (start or 0)))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.target.info(path, **kwargs)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return self.target.ls(path, detail=detail, **kwargs)

    def ukey(self, path: str) -> str:
        return str(self.cached(path))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(READ_ONLY)

    pipe_file = put_file = rm_file = _rm = mkdir = makedirs = rmdir = touch = mv = cp_file = _refuse
