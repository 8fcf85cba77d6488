"""`vvstore://` for fsspec: read models by ref from the store, zero copy.

Paths: `vvstore://NAME@VERSION[/FILE]`, `vvstore://NAME[/FILE]` (the pinned or highest
version), `vvstore://blake3:<hex>[/FILE]`. A single-file model is the file itself; a tree model
is a directory. The project is the nearest `vvstore.yaml` upward from the working directory,
or the `project=` storage option (`FSSPEC_VVSTORE_PROJECT`); the store is `store=` or
`VVSTORE_HOME`. Read-only: every write raises PermissionError.
"""

from __future__ import annotations

import io
import os
from glob import has_magic
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.callbacks import DEFAULT_CALLBACK

from .digest import Digest
from .errors import BlobNotFoundError, NotFoundError, UsageError, VVStoreError
from .manager import DefaultModelManager, Resolved
from .manifest import ModelEntry, find_manifest
from .tree import Tree

READ_ONLY = "vvstore:// is read-only; add models with `vvstore add PATH --name NAME`"


class BlobFile(io.BufferedReader):
    """The blob's own read-only file, with the `size` fsspec's helpers read (get_file's
    progress, read_block)."""

    @property
    def size(self) -> int:
        return os.fstat(self.fileno()).st_size


class VVStoreFileSystem(AbstractFileSystem):
    """A read-only fsspec filesystem over a project's models in the store."""

    protocol = ("vvstore",)
    root_marker = ""
    local_file = True  # _open returns the blob's own file, so open_local gives its path

    def __init__(
        self,
        project: str | None = None,
        store: str | None = None,
        fetch: bool = True,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        self.project = project
        self.store_dir = store
        self.fetch = fetch
        self._manager: DefaultModelManager | None = None
        self._stamp: tuple[str, int, int, int] | None = None  # path, inode, mtime, size

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("vvstore://") :] if path.startswith("vvstore://") else path
        return path.strip("/")

    # --- resolution --------------------------------------------------------------------------

    @property
    def manager(self) -> DefaultModelManager:
        """The project's manager, rebuilt when its manifest changes on disk (by mtime and size)."""
        start = Path(self.project) if self.project else Path.cwd()
        try:
            manifest = start if start.is_file() else find_manifest(start)
            st = os.stat(manifest)
            stamp: tuple[str, int, int, int] | None = (
                str(manifest),
                st.st_ino,
                st.st_mtime_ns,
                st.st_size,
            )
        except VVStoreError:
            manifest, stamp = None, None
        if self._manager is None or stamp != self._stamp:
            self._manager = DefaultModelManager(manifest, self.store_dir)
            self._stamp = stamp
        return self._manager

    def _node(self, path: str) -> tuple[str, Any]:
        """('file', Resolved) or ('dir', (tree, prefix, root))."""
        path = self._strip_protocol(path)
        if not path:
            return "dir", None
        m = self.manager
        try:
            resolved = self._resolve(path)
        except NotFoundError:
            resolved = None
            parent, _, rest = path.rpartition("/")
            while parent:  # a directory inside a tree: find the model, then the prefix
                try:
                    r = m.resolve(parent)
                except (NotFoundError, UsageError):
                    parent, _, more = parent.rpartition("/")
                    rest = f"{more}/{rest}"
                    continue
                tree = self._tree_of(r)
                if tree and any(f.path.startswith(rest + "/") for f in tree.files):
                    return "dir", (tree, rest + "/", parent)
                break
            raise FileNotFoundError(path) from None
        tree = self._tree_of(resolved) if resolved.path is None else None
        if tree is not None:
            return "dir", (tree, "", path)
        return "file", resolved

    def _resolve(self, path: str) -> Resolved:
        """resolve(), fetching first the model of a file whose tree document is not here."""
        m = self.manager
        try:
            return m.resolve(path)
        except BlobNotFoundError:
            ref = m.parse(path)
            if ref.name is None:
                raise
            entry = m.manifest.get_model_info(ref.name, ref.version)
            self._ensure(Resolved(Digest.parse(entry.digest or ""), entry.size, entry))
            return m.resolve(path)

    def _tree_of(self, r: Resolved) -> Tree | None:
        entry = r.entry
        is_tree = entry is not None and entry.kind == "tree" and r.path is None
        if not is_tree:
            return None
        self._ensure(r)
        return self.manager.load_tree(r.digest)

    def _ensure(self, r: Resolved) -> None:
        """Fetch on demand a blob that is not in the store."""
        if self.manager.store.has(r.digest):
            return
        if not self.fetch or r.entry is None:
            raise FileNotFoundError(
                f"{r.digest} is not in the store; "
                f"run `vvstore fetch {r.entry.ref if r.entry else ''}`".rstrip()
            )
        report = self.manager.fetch([r.entry.ref])
        if report.errors:
            raise report.errors[0][1]

    # --- the read-only filesystem ------------------------------------------------------------

    def _file_info(self, name: str, r: Resolved) -> dict[str, Any]:
        size = r.size
        if size is None:
            self._ensure(r)
            size = self.manager.store.path(r.digest).stat().st_size
        return {"name": name, "size": size, "type": "file", "digest": str(r.digest)}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        kind, node = self._node(name)
        if kind == "file":
            return self._file_info(name, node)
        return {"name": name, "size": 0, "type": "directory"}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        name = self._strip_protocol(path)
        kind, node = self._node(name)
        if kind == "file":
            out = [self._file_info(name, node)]
        elif node is None:
            out = [self._model_info(e) for e in self.manager.list_models()]
        else:
            out = _tree_children(*node)
        return out if detail else [o["name"] for o in out]

    def _model_info(self, e: ModelEntry) -> dict[str, Any]:
        if e.kind == "tree":
            return {"name": e.ref, "size": 0, "type": "directory", "digest": e.digest}
        return {"name": e.ref, "size": e.size, "type": "file", "digest": e.digest}

    def _blob(self, path: str) -> Resolved:
        kind, node = self._node(path)
        if kind != "file":
            raise IsADirectoryError(self._strip_protocol(path))
        self._ensure(node)
        return node

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        with self._open(path) as f:
            size = os.fstat(f.fileno()).st_size
            start = 0 if start is None else (start if start >= 0 else max(0, size + start))
            end = size if end is None else (end if end >= 0 else max(0, size + end))
            f.seek(start)
            return f.read(max(0, end - start))

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> Any:
        if mode != "rb":
            raise PermissionError(READ_ONLY)
        return BlobFile(self.manager.store.open(self._blob(path).digest).detach())

    def get(
        self,
        rpath: Any,
        lpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """fsspec's get, except that a one-segment model (a directory at the top) got into an
        existing local directory lands inside it, as any other directory does: fsspec's
        `other_paths` cannot take the parent of a path that has no "/"."""
        top = self._strip_protocol(rpath) if isinstance(rpath, str) else ""
        if (
            recursive
            and top
            and "/" not in top
            and not has_magic(rpath)
            and not rpath.endswith("/")
            and isinstance(lpath, str)
            and os.path.isdir(lpath)
            and self.isdir(top)
        ):
            rpaths = self.expand_path(top, recursive=True, maxdepth=maxdepth)
            if maxdepth is not None:
                rpaths = [p for p in rpaths if not self.isdir(p)]
            lpaths = [os.path.join(lpath, *p.split("/")) for p in rpaths]
            return super().get(rpaths, lpaths, callback=callback, **kwargs)
        return super().get(
            rpath, lpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs
        )

    def ukey(self, path: str) -> str:
        return str(self._blob(path).digest)

    def checksum(self, path: str) -> int:
        return int(Digest.parse(self.ukey(path)).hex[:16], 16)

    def local_path(self, path: str) -> str:
        """The blob's own path (read-only)."""
        return str(self.manager.store.require(self._blob(path).digest))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(READ_ONLY)

    pipe_file = put_file = rm_file = _rm = mkdir = makedirs = rmdir = touch = mv = cp_file = _refuse


def _tree_children(tree: Tree, prefix: str, root: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for f in tree.files:
        if not f.path.startswith(prefix):
            continue
        head, sep, _ = f.path[len(prefix) :].partition("/")
        name = f"{root}/{prefix}{head}"
        if sep:
            seen.setdefault(name, {"name": name, "size": 0, "type": "directory"})
        else:
            seen[name] = {"name": name, "size": f.size, "type": "file", "digest": f.digest}
    return list(seen.values())
