"""The lockfile part of the project facade: lock, lock --check, fetch --locked, verify.

A mixin of :class:`~cas.manager.DefaultModelManager`. Writing a lockfile registers the
project as a gc root of the store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ._fetching import FetchReport, join_source
from .cache import GcReport, ModelCacheManager
from .digest import Digest, Progress
from .download import FetchRequest, FetchResult, FileProgress, ModelDownloader
from .drift import Drift, diff, require_in_sync
from .errors import ModelNotFoundError, NotFoundError, ProjectNotFoundError, VVStoreError
from .lockfile import Hashes, LockedFile, LockedModel, Lockfile
from .manifest import ModelEntry, Policy
from .policy import CachePolicy
from .redact import strip_credentials
from .sources import scheme_of
from .validate import VerifyReport, verify_blobs

if TYPE_CHECKING:
    from .blobs import BlobStore
    from .manifest import ModelManifest
    from .tree import Tree

log = logging.getLogger("vvstore")


@dataclass
class VerifyOutcome:
    """What `verify` found and, with repair, what it fetched again."""

    report: VerifyReport
    repaired: list[str] = field(default_factory=list)
    errors: list[tuple[str, VVStoreError]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and (self.report.ok or bool(self.repaired) and not self.unrepaired)

    @property
    def unrepaired(self) -> list[Digest]:
        fixed = set(self.repaired)
        bad = [d for d, _ in self.report.bad] + self.report.missing
        return [d for d in bad if str(d) not in fixed]


class LockMixin:
    """lock, drift, fetch --locked and verify."""

    store: BlobStore
    manifest: ModelManifest
    lockfile_path: Path

    if TYPE_CHECKING:  # provided by the manager and the fetch mixin

        def register(self) -> Path: ...
        def downloader(
            self,
            *,
            progress: Progress | None = None,
            jobs: int | None = None,
            file_progress: FileProgress | None = None,
        ) -> ModelDownloader: ...
        def select(self, refs: Sequence[str]) -> list[ModelEntry]: ...
        def fetch(self, refs: Sequence[str] = (), **options: Any) -> FetchReport: ...
        def load_tree(self, digest: Digest) -> Tree: ...

    # --- reading and writing the lockfile ----------------------------------------------------

    def load_lock(self) -> Lockfile:
        """The project's lockfile, or an empty one when there is none yet."""
        return Lockfile.load_or_empty(self.lockfile_path)

    def pinned_version(self, name: str) -> str | None:
        """The version of `name` the lockfile pins (the highest if several), or None.

        Parsed once per lockfile state: cached by its mtime and size, so resolving refs in a
        loop does not re-read a lockfile of a thousand models each time.
        """
        try:
            st = os.stat(self.lockfile_path)
        except (FileNotFoundError, ProjectNotFoundError):
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cache = getattr(self, "_pins_cache", None)
        if cache is None or cache[0] != stamp:
            versions: dict[str, str] = {}
            for m in Lockfile.load(self.lockfile_path).models:  # sorted: the last is the highest
                versions[m.name] = m.version
            cache = (stamp, versions)
            self._pins_cache = cache
        return cache[1].get(name)

    def drift(self) -> list[Drift]:
        """How the manifest and the lockfile disagree (empty when in sync). Touches nothing."""
        return diff(self.manifest.data, self.load_lock())

    def update_lock(
        self,
        entries: Iterable[ModelEntry],
        learned: dict[str, str] | None = None,
        prune: bool = False,
    ) -> bool:
        """Lock each entry that is new or changed (others keep their bytes); True if written."""
        lock = self.load_lock()
        cache: dict[str, str] = {}
        wanted = {(e.name, e.version) for e in self.manifest.list_all_models()}
        for entry in entries:
            old = lock.get(entry.name, entry.version)
            if old is not None and not _changed(entry, old):
                continue
            model = self._locked_model(entry, lock, learned or {}, cache)
            if model is not None:
                lock.upsert(model)
        if prune:
            for m in list(lock.models):
                if (m.name, m.version) not in wanted:
                    lock.remove(m.name, m.version)
        written = lock.save(self.lockfile_path)
        self.register()
        return written

    def lock(
        self, *, check: bool = False, jobs: int | None = None, progress: Progress | None = None
    ) -> tuple[list[Drift], FetchReport | None]:
        """Resolve every manifest entry into the lockfile (fetching what must be hashed).

        With `check`, only report drift. Returns the drift found before locking and the fetch
        report of what had to be fetched (None when nothing was).
        """
        drifts = self.drift()
        if check:
            return drifts, None
        entries = self.manifest.list_all_models()
        lock = self.load_lock()
        need = [e.ref for e in entries if not self._lockable(e, lock)]
        report = self.fetch(need, jobs=jobs, progress=progress) if need else None
        if report is not None and report.errors:
            raise report.errors[0][1]
        self.update_lock(entries, _learned(report), prune=True)
        return drifts, report

    def _lockable(self, entry: ModelEntry, lock: Lockfile) -> bool:
        """True when the entry's files are known without fetching."""
        if not entry.digest:
            return False
        old = lock.get(entry.name, entry.version)
        if old is not None and old.digest == entry.digest:
            return True
        return self.store.has(Digest.parse(entry.digest))

    def _locked_model(
        self, entry: ModelEntry, lock: Lockfile, learned: dict[str, str], cache: dict[str, str]
    ) -> LockedModel | None:
        if not entry.digest:
            return None
        sources = [strip_credentials(s) for s in entry.sources]
        resolved = [self._resolve_source(s, cache) for s in sources]
        old = lock.get(entry.name, entry.version)
        known = {f.hashes.blake3: f.hashes.sha256 for f in (old.files if old else [])}
        if entry.kind == "tree":
            digest = Digest.parse(entry.digest)
            if self.store.has(digest):
                items = [
                    (f.path, Digest.parse(f.digest), f.size) for f in self.load_tree(digest).files
                ]
            elif old is not None and old.digest == entry.digest:
                items = [(f.path, Digest.parse(f.digest), f.size) for f in old.files]
            else:
                return None
            files = [
                _file(p, d, n, [join_source(r, p) for r in resolved], known, learned)
                for p, d, n in items
            ]
        else:
            name = entry.file or _file_name(entry)
            files = [
                _file(name, Digest.parse(entry.digest), entry.size or 0, resolved, known, learned)
            ]
        return LockedModel.build(
            entry.name, entry.version, entry.kind, files, format=entry.format, sources=sources
        )

    def _resolve_source(self, url: str, cache: dict[str, str]) -> str:
        """Pin an HF branch or tag to its commit for the lockfile (others unchanged)."""
        if scheme_of(url) != "hf":
            return url
        if url not in cache:
            try:
                cache[url] = strip_credentials(self.downloader().open(url).resolve())
            except (
                Exception
            ) as e:  # recorded as given, with the reason: locking must not fail on it
                log.warning("could not resolve %s to a commit (%s); locking it as written", url, e)
                cache[url] = url
        return cache[url]

    # --- fetch --locked ----------------------------------------------------------------------

    def fetch_locked(
        self,
        refs: Sequence[str] = (),
        *,
        jobs: int | None = None,
        progress: Progress | None = None,
        file_progress: FileProgress | None = None,
    ) -> FetchReport:
        """Fetch exactly the lockfile's digests; refuse (exit 3) if the manifest drifted."""
        if not self.lockfile_path.exists():
            raise NotFoundError(
                f"no lockfile at {self.lockfile_path}", hint="run `vvstore lock` first"
            )
        lock = Lockfile.load(self.lockfile_path)
        require_in_sync(self.manifest.data, lock, str(self.lockfile_path))
        wanted = {(e.name, e.version) for e in self.select(refs)} if refs else None
        models = [m for m in lock.models if wanted is None or (m.name, m.version) in wanted]
        report = FetchReport()
        dl = self.downloader(progress=progress, jobs=jobs, file_progress=file_progress)
        pairs: list[tuple[str, FetchRequest]] = []
        for m in models:
            for f in m.files:
                what = f"{m.ref}/{f.path}" if m.kind == "tree" else m.ref
                fallback = [join_source(s, f.path) if m.kind == "tree" else s for s in m.sources]
                sources = list(dict.fromkeys(f.sources + fallback))
                pairs.append(
                    (
                        m.ref,
                        FetchRequest(
                            what, sources, Digest.parse(f.digest), f.size, f.hashes.sha256
                        ),
                    )
                )
        results = dl.download_batch([r for _, r in pairs])
        for (ref, req), result in zip(pairs, results, strict=True):
            if isinstance(result, VVStoreError):
                report.errors.append((req.what, result))
            elif result.fetched:
                report.fetched.append((req.what, result))
            elif ref not in report.present:
                report.present.append(ref)
        failed = {
            ref
            for (ref, _), result in zip(pairs, results, strict=True)
            if isinstance(result, VVStoreError)
        }
        for m in models:  # the lockfile alone rebuilds a tree document, once its files are in
            if m.kind == "tree" and m.ref not in failed:
                self.store.publish_bytes(m.tree().encode(), expected=Digest.parse(m.digest))
        self.register()
        return report

    # --- gc and pins -------------------------------------------------------------------------

    def gc(
        self,
        *,
        max_size: str | int | None = None,
        ttl: str | None = None,
        grace: str | None = None,
        dry_run: bool = False,
        allow_missing: bool = False,
    ) -> GcReport:
        """Collect unreferenced blobs of the whole store (defaults: the manifest's `policy:`)."""
        defaults = self._policy_defaults()
        policy = CachePolicy.from_strings(
            max_size=max_size if max_size is not None else defaults.max_size,
            ttl=ttl if ttl is not None else defaults.ttl,
            grace=grace if grace is not None else defaults.grace,
        )
        return ModelCacheManager(self.store).enforce_cache_policy(policy, dry_run, allow_missing)

    def _policy_defaults(self) -> Policy:
        try:
            return self.manifest.data.policy or Policy()
        except ProjectNotFoundError:  # gc of a store needs no project
            return Policy()

    def pin_digests(self, ref: str) -> list[Digest]:
        """The blobs `pin`/`unpin` act on: a bare digest, or every blob of a model."""
        if ref.startswith("blake3:"):
            return [Digest.parse(ref)]
        return self._digests_of(self.select([ref]))

    def pin(self, ref: str) -> list[Digest]:
        """Keep a model's (or a digest's) blobs whatever the policy; returns those newly pinned."""
        return ModelCacheManager(self.store).pin(self.pin_digests(ref), ref)

    def unpin(self, ref: str) -> list[Digest]:
        """Let the policy collect them again; returns those that were pinned.

        Pins remember the ref they were made for, so a model already removed from the
        project can still be unpinned by name.
        """
        cache = ModelCacheManager(self.store)
        digests = [d for d, label in cache.pins().items() if label == ref]
        try:
            digests += self.pin_digests(ref)
        except ModelNotFoundError:
            if not digests:
                raise
        return cache.unpin(dict.fromkeys(digests))

    # --- verify ------------------------------------------------------------------------------

    def verify(
        self,
        refs: Sequence[str] = (),
        *,
        repair: bool = False,
        jobs: int | None = None,
        progress: Progress | None = None,
    ) -> VerifyOutcome:
        """Re-hash blobs (all, or the given models'); quarantine bad ones; repair if asked."""
        entries = self._project_entries(refs)
        digests = self._digests_of(entries) if refs else None
        outcome = VerifyOutcome(verify_blobs(self.store, digests, jobs, progress))
        # a full scan sees only what is present: the project's missing blobs are reported too
        bad = {d for d, _ in outcome.report.bad}
        gone = [d for d in self._digests_of(entries) if not self.store.has(d)]
        outcome.report.missing.extend(
            d for d in gone if d not in bad and d not in outcome.report.missing
        )
        if repair:
            broken = bad | set(outcome.report.missing)
            affected = [e.ref for e in entries if broken & set(self._digests_of([e]))]
            if affected:
                report = self.fetch(affected, jobs=jobs)
                outcome.errors.extend(report.errors)
                outcome.repaired = [str(d) for d in broken if self.store.has(d)]
        for d, actual in outcome.report.bad:
            self.store.audit.record(
                "verify", outcome="failed", digest=d, reason=f"content hashes to {actual}"
            )
        for d in outcome.repaired:
            self.store.audit.record("repair", digest=d)
        return outcome

    def _project_entries(self, refs: Sequence[str]) -> list[ModelEntry]:
        """The models named, or all of the project's (none when there is no project here)."""
        try:
            return self.select(refs)
        except ProjectNotFoundError:
            if refs:
                raise
            return []

    def _digests_of(self, entries: Iterable[ModelEntry]) -> list[Digest]:
        """Every blob the entries reference: their own digest and, for trees, each file's."""
        lock: Lockfile | None = None
        out: dict[Digest, None] = {}
        for e in entries:
            if not e.digest:
                continue
            d = Digest.parse(e.digest)
            out[d] = None
            if e.kind != "tree":
                continue
            if self.store.has(d):
                files = [f.digest for f in self.load_tree(d).files]
            else:
                lock = lock or self.load_lock()
                m = lock.get(e.name, e.version)
                files = [f.digest for f in m.files] if m and m.digest == e.digest else []
            out.update((Digest.parse(f), None) for f in files)
        return list(out)


def _changed(entry: ModelEntry, old: LockedModel) -> bool:
    return bool(entry.digest) and (
        old.digest != entry.digest
        or old.sources != [strip_credentials(s) for s in entry.sources]
        or old.format != entry.format
        or old.kind != entry.kind
    )


def _file(
    path: str,
    digest: Digest,
    size: int,
    sources: list[str],
    known: dict[str, str | None],
    learned: dict[str, str],
) -> LockedFile:
    sha = learned.get(digest.hex) or known.get(digest.hex)
    return LockedFile(path, size, Hashes(digest.hex, sha), list(dict.fromkeys(sources)))


def _file_name(entry: ModelEntry) -> str:
    """A single-file model's file name: from its first source, else its name."""
    for s in entry.sources:
        name = PurePosixPath(s.split("?", 1)[0].rstrip("/")).name
        if name and name not in (".", ".."):
            return name
    return entry.name.rsplit("/", 1)[-1]


def _learned(report: FetchReport | None) -> dict[str, str]:
    """sha256 values sources offered during a fetch, by blake3 hex."""
    if report is None:
        return {}
    return {
        r.digest.hex: r.sha256 for _, r in report.fetched if isinstance(r, FetchResult) and r.sha256
    }
