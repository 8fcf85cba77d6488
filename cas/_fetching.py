"""The fetching part of the project facade: make wanted models present and verified.

A mixin of :class:`~cas.manager.DefaultModelManager`; it wires the downloader to the project's
manifest and lockfile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .digest import Digest, Progress
from .download import FetchRequest, FetchResult, FileProgress, ModelDownloader, sources_failed
from .errors import IntegrityError, NotFoundError, SourceError, UsageError, VVStoreError
from .manifest import ModelEntry
from .redact import redact_url, strip_credentials
from .tree import Tree, TreeEntry

if TYPE_CHECKING:
    from .blobs import BlobStore
    from .lockfile import Lockfile
    from .manifest import ModelManifest

log = logging.getLogger("vvstore")


@dataclass
class FetchReport:
    """What `fetch` did, model by model."""

    fetched: list[tuple[str, FetchResult]] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    errors: list[tuple[str, VVStoreError]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.size for _, r in self.fetched if r.fetched)


class FetchMixin:
    """fetch, and the trees it needs."""

    store: BlobStore
    manifest: ModelManifest

    if TYPE_CHECKING:  # provided by the lock mixin

        def load_lock(self) -> Lockfile: ...
        def update_lock(
            self, entries: Any, learned: dict[str, str] | None = None, prune: bool = False
        ) -> bool: ...
        def entry(self, name: str, version: str | None = None) -> ModelEntry: ...

    # --- fetch -------------------------------------------------------------------------------

    def downloader(
        self,
        *,
        progress: Progress | None = None,
        jobs: int | None = None,
        file_progress: FileProgress | None = None,
    ) -> ModelDownloader:
        """A downloader into this store, with the project's sources and storage options."""
        return ModelDownloader(
            self.store,
            base_dir=self.manifest.project_dir,
            options=self.manifest.data.storage,
            jobs=jobs,
            progress=progress,
            file_progress=file_progress,
        )

    def partials(self) -> list[dict[str, Any]]:
        """Partial downloads waiting in the store's tmp/ to be resumed."""
        return ModelDownloader(self.store).partials()

    def select(self, refs: Sequence[str]) -> list[ModelEntry]:
        """The entries named by refs (all models when none)."""
        if not refs:
            return self.list_models()
        out: list[ModelEntry] = []
        for ref in refs:
            r = self.parse(ref)
            if r.name is None:
                raise UsageError(f"{ref}: name a model, not a digest")
            entry = self.entry(r.name, r.version)
            if entry not in out:
                out.append(entry)
        return out

    def fetch(
        self,
        refs: Sequence[str] = (),
        *,
        jobs: int | None = None,
        progress: Progress | None = None,
        file_progress: FileProgress | None = None,
    ) -> FetchReport:
        """Make every wanted model present and verified; record digests learnt on the way.

        `progress` counts every byte received; `file_progress` opens one tracker per file."""
        entries = self.select(refs)
        lock = self.load_lock()  # a malformed lockfile refuses (exit 3) before any transfer
        dl = self.downloader(progress=progress, jobs=jobs, file_progress=file_progress)
        report = FetchReport()
        files = [e for e in entries if e.kind == "file"]
        requests = [
            FetchRequest(
                e.ref,
                _pinned(e, lock).get("", []) + e.sources,
                Digest.parse(e.digest) if e.digest else None,
                e.size,
            )
            for e in files
        ]
        for entry, result in zip(files, dl.download_batch(requests), strict=True):
            if isinstance(result, VVStoreError):
                report.errors.append((entry.ref, result))
                continue
            entry.digest, entry.size = str(result.digest), result.size
            if result.fetched:
                report.fetched.append((entry.ref, result))
            else:
                report.present.append(entry.ref)
        for entry in (e for e in entries if e.kind == "tree"):
            try:
                self._fetch_tree(entry, dl, report, lock)
            except VVStoreError as e:
                report.errors.append((entry.ref, e))
        self.manifest.save()
        self.update_lock(entries, {r.digest.hex: r.sha256 for _, r in report.fetched if r.sha256})
        for ref, result in report.fetched:
            self.store.audit.record(
                "fetch",
                digest=result.digest,
                ref=ref,
                source=redact_url(result.source or ""),
                size=result.size,
            )
        for ref, err in report.errors:
            self.store.audit.record("fetch", outcome="failed", ref=ref, reason=str(err))
        return report

    def _fetch_tree(
        self, entry: ModelEntry, dl: ModelDownloader, report: FetchReport, lock: Lockfile
    ) -> None:
        digest = Digest.parse(entry.digest) if entry.digest else None
        tree: Tree | None = None
        if digest is not None and self.store.has(digest):
            tree = self.load_tree(digest)
        elif digest is not None:
            locked = lock.get(entry.name, entry.version)
            tree = locked.tree() if locked is not None and locked.digest == entry.digest else None
        if digest is not None and tree is not None:
            pinned = _pinned(entry, lock)
            requests = [
                FetchRequest(
                    f"{entry.ref}/{f.path}",
                    pinned.get(f.path, []) + [join_source(s, f.path) for s in entry.sources],
                    Digest.parse(f.digest),
                    f.size,
                )
                for f in tree.files
            ]
            results = dl.download_batch(requests)
            errors = [r for r in results if isinstance(r, VVStoreError)]
            if errors:
                raise errors[0]
            # the tree document (rebuilt from the lockfile if need be) only once its files are in
            self.store.publish_bytes(tree.encode(), expected=digest)
            fetched = [r for r in results if isinstance(r, FetchResult) and r.fetched]
            if not fetched:
                report.present.append(entry.ref)
            for r in fetched:
                report.fetched.append((r.request.what, r))
            return
        failures: list[tuple[str, str]] = []
        wrong = 0
        for url in entry.sources:
            try:
                new, files, _ = self._tree_from_source(dl.open(url), entry.ref, dl, expected=digest)
            except VVStoreError as e:
                wrong += isinstance(e, IntegrityError)
                failures.append((redact_url(url), str(e)))
                continue
            entry.digest, entry.size = new.digest, new.size
            for f in files:
                report.fetched.append(
                    (
                        f"{entry.ref}/{f.path}",
                        FetchResult(
                            FetchRequest(entry.ref, []), Digest.parse(f.digest), f.size, True, url
                        ),
                    )
                )
            return
        if not entry.sources:
            raise NotFoundError(f"{entry.ref} is not in the store and has no sources")
        raise sources_failed(entry.ref, failures, wrong, digest)

    def _tree_from_source(
        self,
        source: Any,
        what: str,
        dl: ModelDownloader,
        expected: Digest | None = None,
        learned: dict[str, str] | None = None,
    ) -> tuple[ModelEntry, list[TreeEntry], int]:
        """Fetch every file of a directory source and store the tree; check it if expected.

        `learned` collects the sha256 values the source offered, by blake3 hex.
        """
        if not source.is_dir():
            raise SourceError(source.display, "is a single file, but the model is a directory")
        listing = source.list()
        requests = [FetchRequest(f"{what}/{e.path}", [e.source.url], None, e.size) for e in listing]
        results = dl.download_batch(requests)
        errors = [r for r in results if isinstance(r, VVStoreError)]
        if errors:
            raise errors[0]
        files = [
            TreeEntry(e.path, str(r.digest), r.size)
            for e, r in zip(listing, results, strict=True)
            if isinstance(r, FetchResult)
        ]
        tree = Tree.from_entries(files)
        pub = self.store.publish_bytes(tree.encode())
        if expected is not None and pub.digest != expected:
            raise IntegrityError(
                f"{source.display} holds a different tree than {what}: "
                f"expected {expected}, got {pub.digest}",
                expected=str(expected),
                actual=str(pub.digest),
            )
        entry = ModelEntry(name="", version="", kind="tree", digest=str(pub.digest), size=tree.size)
        new = sum(1 for r in results if isinstance(r, FetchResult) and r.new)
        if learned is not None:
            learned.update(
                (r.digest.hex, r.sha256) for r in results if isinstance(r, FetchResult) and r.sha256
            )
        return entry, list(tree.files), new


def _pinned(entry: ModelEntry, lock: Lockfile) -> dict[str, list[str]]:
    """The lockfile's resolved sources of each file of the entry (by path; "" for a file
    model) that the manifest does not list itself (an HF commit where the manifest names a
    branch), to try first; only when the lockfile pins the entry's digest from the
    manifest's very sources. One pass over the lockfile's files, however many there are."""
    m = lock.get(entry.name, entry.version)
    stripped = [strip_credentials(s) for s in entry.sources]
    if m is None or not entry.digest or m.digest != entry.digest or m.sources != stripped:
        return {}
    out: dict[str, list[str]] = {}
    for f in m.files:
        path = "" if entry.kind == "file" else f.path
        given = set(stripped) if entry.kind == "file" else {join_source(s, path) for s in stripped}
        out.setdefault(path, []).extend(s for s in f.sources if s not in given)
    return {path: list(dict.fromkeys(sources)) for path, sources in out.items()}


def join_source(source: str, path: str) -> str:
    """The URL of one file of a directory source."""
    return f"{source.rstrip('/')}/{path}"
