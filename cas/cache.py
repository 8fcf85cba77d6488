"""The shared store's cache: roots, pins, and enforcing the gc policy safely.

Mark: the referenced set is every registered root's lockfile (file and tree digests) plus
`pins/`. A root whose lockfile is gone is dropped; one that cannot be read stops gc (fail
closed). Sweep: one gc at a time (a store lock), and each victim is moved into `tmp/`, its
mtime checked again, and put back if another process used it meanwhile; only then unlinked.
Correctness never rests on the lock: a process that finds its blob gone fetches it again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .atomic import atomic_write, unique_suffix
from .blobs import BlobStore
from .digest import Digest
from .errors import BlobNotFoundError, LockTimeoutError, UsageError
from .lockfile import Lockfile
from .policy import CachePolicy, GcPlan, Victim, plan_gc

log = logging.getLogger("vvstore")
STALE_TMP = 86400.0  # partial downloads untouched this long are debris


@dataclass
class GcReport:
    """What gc planned and did."""

    plan: GcPlan
    dry_run: bool
    deleted: list[Victim] = field(default_factory=list)
    kept_in_use: list[Victim] = field(default_factory=list)  # freshened during the sweep
    missing: list[Digest] = field(default_factory=list)
    dropped_roots: list[str] = field(default_factory=list)
    tmp_cleaned: int = 0

    @property
    def freed(self) -> int:
        return sum(v.size for v in self.deleted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "plan": self.plan.to_dict(),
            "deleted": [v.to_dict() for v in self.deleted],
            "kept_in_use": [str(v.digest) for v in self.kept_in_use],
            "freed_bytes": self.freed,
            "missing": [str(d) for d in self.missing],
            "dropped_roots": self.dropped_roots,
            "tmp_cleaned": self.tmp_cleaned,
        }


@dataclass
class Marks:
    """The referenced and pinned digests, who referenced them, and what roots said."""

    referenced: set[Digest] = field(default_factory=set)
    pinned: set[Digest] = field(default_factory=set)
    owners: dict[Digest, str] = field(default_factory=dict)
    models: list[tuple[str, str, Digest, list[Digest]]] = field(
        default_factory=list
    )  # lockfile, ref, digest, files
    dropped_roots: list[str] = field(default_factory=list)


class ModelCacheManager:
    """Roots, pins and the gc policy over one :class:`BlobStore`."""

    def __init__(self, store: BlobStore | str | os.PathLike[str] | None = None) -> None:
        self.store = store if isinstance(store, BlobStore) else BlobStore(store)

    # --- roots and pins ----------------------------------------------------------------------

    def roots(self) -> list[tuple[Path, Path]]:
        """(root entry, lockfile path) for every registered project."""
        out = []
        for entry in sorted(self.store.layout.roots.iterdir()):
            if entry.name.startswith("."):  # atomic_write's temp file: a registration in flight
                continue
            try:
                out.append((entry, Path(entry.read_text().strip())))
            except (OSError, UnicodeDecodeError) as e:
                log.warning("ignoring unreadable root entry %s: %s", entry, e)
        return out

    def pins(self) -> dict[Digest, str]:
        """Pinned digests and what was pinned (a ref or the digest itself)."""
        out = {}
        for entry in self.store.layout.pins.iterdir():
            if Digest.is_digest("blake3:" + entry.name):
                try:
                    out[Digest(entry.name)] = entry.read_text().strip() or entry.name
                except FileNotFoundError:  # unpinned while we looked
                    continue
        return out

    def pin(self, digests: Iterable[Digest], label: str) -> list[Digest]:
        """Keep these blobs regardless of policy; returns those newly pinned."""
        new = []
        for d in digests:
            path = self.store.layout.pins / d.hex
            if not path.exists():
                atomic_write(path, (label + "\n").encode())
                new.append(d)
                self.store.audit.record("pin", digest=d, ref=label)
        return new

    def unpin(self, digests: Iterable[Digest]) -> list[Digest]:
        """Let these blobs be collected by policy again; returns those that were pinned."""
        gone = []
        for d in digests:
            try:
                os.unlink(self.store.layout.pins / d.hex)
            except FileNotFoundError:
                continue
            gone.append(d)
            self.store.audit.record("unpin", digest=d)
        return gone

    def mark(self, prune: bool = False) -> Marks:
        """Read every root (dropping vanished ones unless `prune` is off; an unreadable one
        raises, exit 3) and pins."""
        marks = Marks()
        for entry, lockfile in self.roots():
            if not lockfile.exists() and (not prune or self._drop_root(entry, lockfile)):
                log.info("dropping root %s: its lockfile is gone", lockfile)
                marks.dropped_roots.append(str(lockfile))
                continue
            lock = Lockfile.load(lockfile)  # LockfileError (exit 3) if unreadable: fail closed
            for m in lock.models:
                files = [Digest.parse(f.digest) for f in m.files]
                marks.models.append((str(lockfile), m.ref, Digest.parse(m.digest), files))
                for d in (Digest.parse(m.digest), *files):
                    marks.referenced.add(d)
                    marks.owners.setdefault(d, m.ref)
        pins = self.pins()
        marks.pinned = set(pins)
        for d, label in pins.items():
            marks.owners.setdefault(d, f"pinned {label}")
        return marks

    def _drop_root(self, entry: Path, lockfile: Path) -> bool:
        """Unregister a root whose lockfile is gone, unless the lockfile appears meanwhile: a
        project's first lock writes its lockfile after `init` registered it, and register()
        leaves an entry it finds in place. So move the entry aside, look again, and put it
        back if the lockfile is there now; True when the root was dropped."""
        hold = self.store.layout.tmp / f"root.{entry.name}.{unique_suffix()}"
        try:
            os.rename(entry, hold)
        except FileNotFoundError:  # dropped by someone else
            return True
        if lockfile.exists():
            os.replace(hold, entry)
            return False
        os.unlink(hold)
        return True

    # --- gc ----------------------------------------------------------------------------------

    def enforce_cache_policy(
        self,
        policy: CachePolicy | None = None,
        dry_run: bool = False,
        allow_missing: bool = False,
        now: float | None = None,
    ) -> GcReport:
        """Collect unreferenced blobs by policy (default: every one past the grace period)."""
        policy = policy or CachePolicy()
        with self._gc_lock():
            marks = self.mark(prune=not dry_run)
            stats = list(self.store.iter_blobs())
            present = {s.digest for s in stats}
            missing = sorted(d for d in marks.referenced if d not in present)
            if missing and not allow_missing:
                raise BlobNotFoundError(
                    str(missing[0]),
                    hint=f"{len(missing)} referenced blob(s) missing "
                    f"(first owned by {marks.owners.get(missing[0], '?')}); "
                    "run `vvstore fetch`, or "
                    "pass --allow-missing to collect anyway",
                )
            now = time.time() if now is None else now
            owners = {**self._last_owners(), **marks.owners}
            plan = plan_gc(stats, marks.referenced, marks.pinned, policy, now, owners)
            report = GcReport(plan, dry_run, missing=missing, dropped_roots=marks.dropped_roots)
            if not dry_run:
                for victim in plan.delete:
                    (report.deleted if self._sweep(victim) else report.kept_in_use).append(victim)
                report.tmp_cleaned = self._clean_tmp(now)
        return report

    def _last_owners(self) -> dict[Digest, str]:
        """The model each digest last belonged to, from the audit log (for gc's report)."""
        owners: dict[Digest, str] = {}
        for e in self.store.audit.entries():
            digest, ref = e.get("digest"), e.get("ref")
            if (
                e.get("action") in ("add", "fetch")
                and ref
                and isinstance(digest, str)
                and Digest.is_digest(digest)
            ):
                owners[Digest.parse(digest)] = ref
        return owners

    def _gc_lock(self) -> Any:
        lock = FileLock(str(self.store.layout.locks / "gc.lock"), timeout=10)
        try:
            lock.acquire()
        except Timeout:
            raise LockTimeoutError(
                "another gc is running on this store",
                hint=f"wait for it, or remove {lock.lock_file} if none is",
            ) from None
        return _Release(lock)

    def _sweep(self, victim: Victim) -> bool:
        """Delete one blob unless it was used since planning; True when deleted."""
        path = self.store.path(victim.digest)
        hold = self.store.layout.tmp / f"gc.{victim.digest.hex}.{unique_suffix()}"
        try:
            os.rename(path, hold)  # out of blobs/: nobody can freshen it while we look
        except FileNotFoundError:
            return False
        if os.stat(hold).st_mtime != victim.mtime:  # freshened between plan and rename
            try:
                os.link(hold, path)  # back in place, unless a fresh copy was published meanwhile
            except FileExistsError:
                pass
            os.unlink(hold)
            return False
        os.unlink(hold)
        self.store.audit.record(
            "gc", digest=victim.digest, ref=victim.owner, size=victim.size, reason=victim.reason
        )
        return True

    def _clean_tmp(self, now: float) -> int:
        count = 0
        for entry in os.scandir(self.store.layout.tmp):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP:
                    os.unlink(entry.path)
                    count += 1
            except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
                log.info("left %s in tmp/: %s", entry.path, e)
        return count

    # --- the seed API ------------------------------------------------------------------------

    def add_to_cache(self, path_or_digest: str | os.PathLike[str] | Digest) -> Digest:
        """Store a local file (or check a digest is present); returns its digest."""
        if isinstance(path_or_digest, Digest) or str(path_or_digest).startswith("blake3:"):
            d = (
                path_or_digest
                if isinstance(path_or_digest, Digest)
                else Digest.parse(str(path_or_digest))
            )
            self.store.require(d)
            return d
        return self.store.publish_file(path_or_digest).digest

    def remove_from_cache(self, digest: Digest | str, force: bool = False) -> bool:
        """Delete one blob; refuses (exit 2) a referenced or pinned one unless `force`."""
        d = digest if isinstance(digest, Digest) else Digest.parse(digest)
        marks = self.mark()
        if not force and (d in marks.referenced or d in marks.pinned):
            raise UsageError(
                f"{d} is still used by {marks.owners.get(d, 'a project')}",
                hint="remove the model from its project (`vvstore rm`), or unpin it",
            )
        deleted = self.store.delete(d)
        if deleted:
            self.store.audit.record("remove", digest=d, reason="remove_from_cache")
        return deleted

    def list_cached_models(self) -> list[dict[str, Any]]:
        """Every model that a root references: present or missing, size, last use."""
        out = []
        for lockfile, ref, digest, files in self.mark().models:
            stats = [_stat(self.store.path(d)) for d in files]
            out.append(
                {
                    "ref": ref,
                    "project": str(Path(lockfile).parent),
                    "digest": str(digest),
                    "cached": all(s is not None for s in stats),
                    "size": sum(s.st_size for s in stats if s),
                    "last_used": max((s.st_mtime for s in stats if s), default=None),
                }
            )
        return out

    def clear_cache(self, unreferenced_only: bool = True) -> GcReport:
        """Delete every unreferenced blob now (grace 0); or, if not `unreferenced_only`, all."""
        if unreferenced_only:
            return self.enforce_cache_policy(CachePolicy(grace=0.0), allow_missing=True)
        with self._gc_lock():
            stats = list(self.store.iter_blobs())
            plan = plan_gc(
                stats, set(), set(), CachePolicy(grace=0.0, keep_pinned=False), time.time()
            )
            report = GcReport(plan, False)
            report.deleted = [v for v in plan.delete if self._sweep(v)]
        return report

    # --- du ----------------------------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        """Space by model; referenced, unreferenced and pinned bytes; dedup savings; partials."""
        marks = self.mark()
        sizes = {b.digest: b.size for b in self.store.iter_blobs()}
        per_model = []
        logical = 0
        for lockfile, ref, _, files in marks.models:
            size = sum(sizes.get(d, 0) for d in files)
            logical += size
            per_model.append(
                {
                    "ref": ref,
                    "project": str(Path(lockfile).parent),
                    "bytes": size,
                    "present": all(d in sizes for d in files),
                }
            )
        referenced = sum(sizes[d] for d in marks.referenced if d in sizes)
        pinned = sum(sizes[d] for d in marks.pinned - marks.referenced if d in sizes)
        partial = sum(e.stat().st_size for e in os.scandir(self.store.layout.tmp) if e.is_file())
        return {
            "store": str(self.store.root),
            "blobs": len(sizes),
            "total_bytes": sum(sizes.values()),
            "referenced_bytes": referenced,
            "pinned_bytes": pinned,
            "unreferenced_bytes": sum(sizes.values()) - referenced - pinned,
            "dedup_saved_bytes": max(0, logical - referenced),
            "partial_bytes": partial,
            "models": per_model,
        }


class _Release:
    def __init__(self, lock: FileLock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
