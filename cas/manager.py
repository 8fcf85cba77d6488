"""The facade for a project: add, fetch, lock, gc, verify, open, list.

This is the one module that wires the store, the manifest and the transfer pieces together;
the CLI calls only this facade and :class:`~cas.manifest.ModelManifest`.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ._fetching import FetchMixin
from ._locking import LockMixin
from .atomic import atomic_write
from .blobs import LINK_MODES, BlobStore, LinkMode
from .digest import Digest, Progress
from .download import FetchRequest
from .errors import IntegrityError, NotFoundError, UsageError
from .formats import guess_format, guess_tree_format
from .manifest import (
    MANIFEST_NAMES,
    ModelEntry,
    ModelManifest,
    find_manifest,
)
from .names import Ref, parse_ref, validate_name, validate_version
from .redact import has_credentials, redact_url, strip_credentials
from .sources import scheme_of
from .tree import Tree, TreeEntry
from .walk import walk_files

log = logging.getLogger("vvstore")
LOCKFILE_NAME = "vvstore.lock"
DEFAULT_VERSION = "1"


@dataclass
class AddResult:
    """What `add` stored for one path."""

    entry: ModelEntry
    files: int
    new_blobs: int
    link: str
    replaced: ModelEntry | None = None
    learned: dict[str, str] = field(default_factory=dict)  # sha256 a source offered, by blake3 hex


@dataclass
class Resolved:
    """A ref resolved to one blob: the model entry (if any), the file path in it, the digest."""

    digest: Digest
    size: int | None
    entry: ModelEntry | None = None
    path: str | None = None
    tree: Tree | None = field(default=None, repr=False)


class BaseModelManager(abc.ABC):
    """What a model store does for a project. Implement it for a different kind of store."""

    @abc.abstractmethod
    def add(self, paths: Sequence[str], **options: Any) -> list[AddResult]:
        """Store files or directories and record them as models."""

    @abc.abstractmethod
    def list_models(self) -> list[ModelEntry]:
        """The project's models."""

    @abc.abstractmethod
    def resolve(self, ref: str) -> Resolved:
        """A ref (`name@version[/file]`, `name[/file]`, `blake3:<hex>[/file]`) to one blob."""

    @abc.abstractmethod
    def open(self, ref: str) -> BinaryIO:
        """A local read-only file object on the ref's bytes."""

    @abc.abstractmethod
    def path(self, ref: str) -> Path:
        """The local path of the ref's blob."""

    @abc.abstractmethod
    def remove(self, ref: str) -> list[ModelEntry]:
        """Drop a model from the project (its bytes are left to gc)."""

    def fetch(self, refs: Sequence[str] = (), **options: Any) -> Any:
        """Make every wanted blob present and verified."""
        raise NotImplementedError(f"{type(self).__name__} does not fetch")

    def lock(self, **options: Any) -> Any:
        """Resolve the manifest into the lockfile."""
        raise NotImplementedError(f"{type(self).__name__} does not lock")

    def gc(self, **options: Any) -> Any:
        """Collect unreferenced blobs by policy."""
        raise NotImplementedError(f"{type(self).__name__} does not collect garbage")

    def verify(self, refs: Sequence[str] = (), **options: Any) -> Any:
        """Re-hash blobs and report bad ones."""
        raise NotImplementedError(f"{type(self).__name__} does not verify")


class DefaultModelManager(FetchMixin, LockMixin, BaseModelManager):
    """A project on the local blob store, with fsspec sources.

    Args:
        project: the project directory (or its manifest); None finds the nearest manifest
            upward from the working directory. Commands that need no project never look.
        store: the store directory; None means `$VVSTORE_HOME` or the default cache dir.
    """

    def __init__(
        self,
        project: str | os.PathLike[str] | None = None,
        store: str | os.PathLike[str] | BlobStore | None = None,
    ) -> None:
        self.store = store if isinstance(store, BlobStore) else BlobStore(store)
        self._project = Path(project) if project is not None else None
        self._manifest: ModelManifest | None = None

    # --- project -----------------------------------------------------------------------------

    @property
    def manifest(self) -> ModelManifest:
        """The project's manifest, loaded on first use."""
        if self._manifest is None:
            start = self._project if self._project is not None else Path.cwd()
            path = start if start.is_file() else find_manifest(start)
            self._manifest = ModelManifest.load_manifest(path)
        return self._manifest

    @property
    def lockfile_path(self) -> Path:
        return self.manifest.project_dir / LOCKFILE_NAME

    def init(self) -> tuple[Path, bool]:
        """Create `vvstore.yaml` (if absent) and register the project; (path, created)."""
        project = (self._project or Path.cwd()).absolute()
        for name in MANIFEST_NAMES:
            if (project / name).is_file():
                self._manifest = ModelManifest.load_manifest(project / name)
                self.register()
                return project / name, False
        project.mkdir(parents=True, exist_ok=True)
        manifest = ModelManifest(project / MANIFEST_NAMES[0])
        atomic_write(manifest.path, b"models: []\n")
        self._manifest = manifest
        self.register()
        self.store.audit.record("init", ref=str(project))
        return manifest.path, True

    def register(self) -> Path:
        """Register this project's lockfile as a gc root of the store."""
        lockfile = self.lockfile_path
        entry = self.store.layout.root_entry(lockfile)
        content = (str(lockfile) + "\n").encode()
        try:
            same = entry.read_bytes() == content
        except FileNotFoundError:  # not registered yet, or a gc is dropping it right now
            same = False
        if not same:  # the temp file goes to tmp/: roots/ holds only whole entries
            atomic_write(entry, content, tmp_dir=self.store.layout.tmp)
        return entry

    # --- add ---------------------------------------------------------------------------------

    def add(
        self,
        paths: Sequence[str],
        *,
        name: str | None = None,
        version: str | None = None,
        tags: Iterable[str] = (),
        link: LinkMode = "copy",
        format: str | None = None,
        progress: Progress | None = None,
    ) -> list[AddResult]:
        """Store each path (a file, or a directory as a tree) as one model version."""
        if not paths:
            raise UsageError("nothing to add", hint="name one or more files or directories")
        if name is not None and len(paths) > 1:
            raise UsageError("--name needs exactly one path", hint="add the paths one at a time")
        if link not in LINK_MODES:
            raise UsageError(f"unknown link mode {link!r}; use one of {', '.join(LINK_MODES)}")
        version = validate_version(version) if version is not None else DEFAULT_VERSION
        self.load_lock()  # a malformed lockfile refuses (exit 3) before anything is stored
        for p in paths:
            if scheme_of(p) == "file" and not os.path.exists(p):
                raise NotFoundError(f"{p}: no such file or directory")
            if scheme_of(p) != "file" and name is None:
                raise UsageError(
                    f"{redact_url(p)}: a URL needs --name", hint="e.g. --name acme/tiny"
                )
        plans = [(p, validate_name(name or _default_name(p))) for p in paths]
        results = [
            self._add_one(Path(p), n, version, list(tags), link, format, progress)
            if scheme_of(p) == "file"
            else self._add_url(p, n, version, list(tags), format, progress)
            for p, n in plans
        ]
        self.manifest.save()
        self.update_lock(
            [r.entry for r in results], {k: v for r in results for k, v in r.learned.items()}
        )
        return results

    def _add_one(
        self,
        src: Path,
        name: str,
        version: str,
        tags: list[str],
        link: LinkMode,
        format: str | None,
        progress: Progress | None,
    ) -> AddResult:
        if src.is_dir():
            entry, files, new, how = self._add_tree(src, link, progress)
            entry.format = format or guess_tree_format(e.path for e in files)
        else:
            pub = self.store.publish_file(src, link=link, progress=progress)
            entry = ModelEntry(name="", version="", file=src.name, digest=str(pub.digest))
            entry.size, entry.format = pub.size, format or guess_format(src.name)
            files, new, how = (
                [TreeEntry(src.name, str(pub.digest), pub.size)],
                int(pub.new),
                pub.link,
            )
        source = self._local_source(src)
        return self._record(entry, name, version, tags, [source] if source else [], files, new, how)

    def _add_url(
        self,
        url: str,
        name: str,
        version: str,
        tags: list[str],
        format: str | None,
        progress: Progress | None,
    ) -> AddResult:
        if has_credentials(url):
            log.warning(
                "not recording the credentials in %s; give them through the environment",
                redact_url(url),
            )
        dl = self.downloader(progress=progress)
        source = dl.open(url)
        learned: dict[str, str] = {}
        if source.is_dir():
            entry, files, new = self._tree_from_source(source, name, dl, learned=learned)
            entry.format = format or guess_tree_format(f.path for f in files)
            url = source.url  # an HF branch or tag is recorded as the commit it resolved to
        else:
            res = dl.download(FetchRequest(name, [url]))
            url = res.source or url
            if res.sha256:
                learned[res.digest.hex] = res.sha256
            fname = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
            entry = ModelEntry(
                name="", version="", file=fname or None, digest=str(res.digest), size=res.size
            )
            entry.format = format or guess_format(fname)
            files, new = [TreeEntry(fname, str(res.digest), res.size)], int(res.new)
        result = self._record(
            entry, name, version, tags, [strip_credentials(url)], files, new, "copy"
        )
        result.learned = learned
        return result

    def _record(
        self,
        entry: ModelEntry,
        name: str,
        version: str,
        tags: list[str],
        sources: list[str],
        files: list[TreeEntry],
        new: int,
        how: str,
    ) -> AddResult:
        entry.name, entry.version, entry.tags = name, version, sorted(set(tags))
        entry.sources = sources
        replaced = self.manifest.update_manifest(entry, save=False)
        if replaced and replaced.digest != entry.digest:
            log.warning("%s changed: %s -> %s", entry.ref, replaced.digest, entry.digest)
        self.store.audit.record("add", digest=entry.digest, ref=entry.ref, size=entry.size)
        return AddResult(entry, len(files), new, how, replaced)

    def _add_tree(
        self, src: Path, link: LinkMode, progress: Progress | None
    ) -> tuple[ModelEntry, list[TreeEntry], int, str]:
        files, new, how = [], 0, "copy"
        for rel, path in list(walk_files(src)):  # every name checked before any byte is stored
            pub = self.store.publish_file(path, link=link, progress=progress)
            files.append(TreeEntry(rel, str(pub.digest), pub.size))
            new += pub.new
            how = pub.link if pub.new else how
        tree = Tree.from_entries(files)
        pub = self.store.publish_bytes(tree.encode())
        entry = ModelEntry(name="", version="", kind="tree", digest=str(pub.digest), size=tree.size)
        return entry, list(tree.files), new + pub.new, how

    def _local_source(self, src: Path) -> str | None:
        """A path inside the project is recorded as a portable, relative source."""
        try:
            rel = Path(os.path.abspath(src)).relative_to(self.manifest.project_dir)
        except ValueError:
            return None
        return rel.as_posix()

    # --- read --------------------------------------------------------------------------------

    def list_models(self) -> list[ModelEntry]:
        return self.manifest.list_all_models()

    def is_present(self, entry: ModelEntry) -> bool:
        """True when the entry's blob (and, for a tree, every file) is in the store."""
        if not entry.digest or not self.store.has(Digest.parse(entry.digest)):
            return False
        if entry.kind == "tree":
            tree = self.load_tree(Digest.parse(entry.digest))
            return all(self.store.has(Digest.parse(f.digest)) for f in tree.files)
        return True

    def load_tree(self, digest: Digest) -> Tree:
        """Read and validate a tree blob."""
        with self.store.open(digest) as f:
            return Tree.decode(f.read(), what=f"tree {digest.short}")

    def parse(self, ref: str) -> Ref:
        """Parse a ref against this project's model names (a bare digest needs no project)."""
        if ref.startswith("blake3:"):
            return parse_ref(ref)
        return parse_ref(ref, self.manifest.names())

    def entry(self, name: str, version: str | None = None) -> ModelEntry:
        """The manifest entry for `name@version`; a bare name means the version the lockfile
        pins (when the manifest lists it), else the highest the manifest lists."""
        if version is None:
            pinned = self.pinned_version(name)
            if pinned is not None and any(
                m.name == name and m.version == pinned for m in self.list_models()
            ):
                version = pinned
        return self.manifest.get_model_info(name, version)

    def resolve(self, ref: str) -> Resolved:
        r = self.parse(ref)
        if r.digest is not None:
            return self._resolve_digest(r.digest, r.path, ref)
        assert r.name is not None
        entry = self.entry(r.name, r.version)
        if not entry.digest:
            raise NotFoundError(
                f"{entry.ref} has no digest yet", hint="run `vvstore fetch` to fetch and hash it"
            )
        digest = Digest.parse(entry.digest)
        if entry.kind == "tree":
            resolved = self._resolve_digest(digest, r.path, ref)
            resolved.entry = entry
            return resolved
        if r.path is not None and r.path != entry.file:
            raise NotFoundError(f"{ref}: {entry.ref} is a single file ({entry.file or 'unnamed'})")
        return Resolved(digest, entry.size, entry, entry.file)

    def _resolve_digest(self, digest: Digest, path: str | None, ref: str) -> Resolved:
        if path is None:
            return Resolved(digest, None)
        tree = self.load_tree(digest)
        item = tree.get(path)
        if item is None:
            raise NotFoundError(
                f"{ref}: no file {path!r} in this model", hint="`vvstore show` lists its files"
            )
        return Resolved(Digest.parse(item.digest), item.size, None, path, tree)

    def _file_blob(self, ref: str) -> Resolved:
        resolved = self.resolve(ref)
        if resolved.entry and resolved.entry.kind == "tree" and resolved.path is None:
            raise UsageError(
                f"{ref} is a directory model; name one of its files",
                hint=f"e.g. {resolved.entry.ref}/<path>; `vvstore show {ref}` lists them",
            )
        return resolved

    def path(self, ref: str) -> Path:
        return self.store.require(self._file_blob(ref).digest)

    def open(self, ref: str) -> BinaryIO:
        resolved = self._file_blob(ref)
        f = self.store.open(resolved.digest)
        if resolved.size is not None and os.fstat(f.fileno()).st_size != resolved.size:
            f.close()
            raise IntegrityError(
                f"{ref}: blob size differs from the recorded size; run `vvstore verify`"
            )
        return f

    def show(self, ref: str) -> dict[str, Any]:
        """Everything known of a model (or blob): entry fields, presence, files of a tree."""
        resolved = self.resolve(ref)
        entry = resolved.entry
        info: dict[str, Any] = {"ref": ref, "digest": str(resolved.digest)}
        if entry is not None and resolved.path is not None and entry.kind == "tree":
            info.update(
                model=entry.ref,
                model_digest=entry.digest,
                path=resolved.path,
                size=resolved.size,
                present=self.store.has(resolved.digest),
            )
        elif entry is not None:
            info.update(_entry_dict(entry))
            info["present"] = self.is_present(entry)
            if entry.kind == "tree" and resolved.path is None and info["present"]:
                tree = self.load_tree(Digest.parse(entry.digest or ""))
                info["files"] = [
                    {"path": f.path, "digest": f.digest, "size": f.size} for f in tree.files
                ]
        else:
            info["present"] = self.store.has(resolved.digest)
            if info["present"]:
                info["size"] = self.store.path(resolved.digest).stat().st_size
        return info

    def remove(self, ref: str) -> list[ModelEntry]:
        r = self.parse(ref)
        if r.name is None or r.path is not None:
            raise UsageError(f"{ref}: name a model (name or name@version), not a file or digest")
        self.load_lock()  # a malformed lockfile refuses (exit 3) before the manifest is written
        gone = self.manifest.remove_model(r.name, r.version)
        if self.lockfile_path.exists():
            self.update_lock([], prune=True)
        for entry in gone:
            self.store.audit.record("remove", digest=entry.digest, ref=entry.ref)
        return gone


def _default_name(path: str) -> str:
    p = Path(path)
    base = p.name if p.is_dir() else p.stem
    if not base:
        base = Path(os.path.abspath(path)).name
    try:
        return validate_name(base)
    except UsageError as e:
        raise UsageError(f"{path}: cannot use {base!r} as a model name", hint="pass --name") from e


def _entry_dict(entry: ModelEntry) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(entry) | {"ref": entry.ref}
