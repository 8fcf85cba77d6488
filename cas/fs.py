"""`vvstore://` for fsspec: read models by ref from the store, zero copy.

Paths: `vvstore://NAME@VERSION[/FILE]`, `vvstore://NAME[/FILE]` (the pinned or highest
version), `vvstore://blake3:<hex>[/FILE]`. A single-file model is the file itself; a tree model
is a directory. The project is the nearest `vvstore.yaml` upward from the working directory,
or the `project=` storage option (`FSSPEC_VVSTORE_PROJECT`); the store is `store=` or
`VVSTORE_HOME`. Read-only: every write raises PermissionError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem

from .digest import Digest
from .errors import NotFoundError, UsageError, VVStoreError
from .manager import DefaultModelManager, Resolved
from .manifest import ModelEntry, find_manifest
from .tree import Tree

READ_ONLY = "vvstore:// is read-only; add models with `vvstore add PATH --name NAME`"


class VVStoreFileSystem(AbstractFileSystem):
    """A read-only fsspec filesystem over a project's models in the store."""

    protocol = ("vvstore",)
    root_marker = ""
    local_file = True  # _open returns the blob's own file, so open_local gives its path

    def __init__(self, project: str | None = None, store: str | None = None, fetch: bool = True,
                 **storage_options: Any) -> None:
        super().__init__(**storage_options)
        self.project = project
        self.store_dir = store
        self.fetch = fetch
        self._manager: DefaultModelManager | None = None
        self._stamp: tuple[float, int] | None = None

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("vvstore://"):] if path.startswith("vvstore://") else path
        return path.strip("/")

    # --- resolution --------------------------------------------------------------------------

    @property
    def manager(self) -> DefaultModelManager:
        """The project's manager, rebuilt when its manifest changes on disk (by mtime and size)."""
        start = Path(self.project) if self.project else Path.cwd()
        try:
            manifest = start if start.is_file() else find_manifest(start)
            st = os.stat(manifest)
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
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
            resolved = m.resolve(path)
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
            raise FileNotFoundError(f"{r.digest} is not in the store; run `vvstore fetch {r.entry.ref if r.entry else ''}`".rstrip())
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

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self._open(path) as f:
            size = os.fstat(f.fileno()).st_size
            start = 0 if start is None else (start if start >= 0 else max(0, size + start))
            end = size if end is None else (end if end >= 0 else max(0, size + end))
            f.seek(start)
            return f.read(max(0, end - start))

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(READ_ONLY)
        return self.manager.store.open(self._blob(path).digest)

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
        head, sep, _ = f.path[len(prefix):].partition("/")
        name = f"{root}/{prefix}{head}"
        if sep:
            seen.setdefault(name, {"name": name, "size": 0, "type": "directory"})
        else:
            seen[name] = {"name": name, "size": f.size, "type": "file", "digest": f.digest}
    return list(seen.values())
