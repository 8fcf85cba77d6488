"""Drift between the manifest and the lockfile. Pure.

A model in the manifest and not locked is `added`; locked and not in the manifest, `removed`;
when one name lost exactly one version and gained exactly one, it is one `version` change.
For a model in both: `kind`, `file`, `format` and `digest` drift only when the manifest states
them; `source` drifts when the manifest's sources (credentials stripped) differ from the
lock's model-level sources. No drift means in sync.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import DriftError
from .lockfile import LOCKFILE_NAME, LockedModel, Lockfile
from .manifest import Manifest, ModelEntry, version_key
from .redact import redact_url, strip_credentials

DriftKind = Literal["added", "removed", "version", "kind", "file", "format", "digest", "source"]


@dataclass(frozen=True)
class Drift:
    """One way the manifest and the lockfile disagree (`manifest` and `locked` values)."""

    kind: DriftKind
    name: str
    version: str
    manifest: str | None = None
    locked: str | None = None

    def __str__(self) -> str:
        ref = f"{self.name}@{self.version}"
        if self.kind == "added":
            return f"+ {ref} (in manifest, not locked)"
        if self.kind == "removed":
            return f"- {ref} (locked, not in manifest)"
        if self.kind == "version":
            return f"~ {self.name}: version {self.locked} (locked) -> {self.manifest} (manifest)"
        return f"~ {ref}: {self.kind} {self.locked} (locked) -> {self.manifest} (manifest)"


def diff(manifest: Manifest, lock: Lockfile) -> list[Drift]:
    """Every disagreement between manifest and lockfile, by model name; empty when in sync."""
    wanted: dict[str, dict[str, ModelEntry]] = defaultdict(dict)
    locked: dict[str, dict[str, LockedModel]] = defaultdict(dict)
    for e in manifest.models:
        wanted[e.name][e.version] = e
    for m in lock.models:
        locked[m.name][m.version] = m
    drifts: list[Drift] = []
    for name in sorted(wanted.keys() | locked.keys()):
        w, have = wanted[name], locked[name]
        for v in sorted(w.keys() & have.keys(), key=version_key):
            drifts.extend(_changes(w[v], have[v]))
        new = sorted(w.keys() - have.keys(), key=version_key)
        old = sorted(have.keys() - w.keys(), key=version_key)
        if len(new) == 1 and len(old) == 1:
            drifts.append(Drift("version", name, new[0], new[0], old[0]))
            continue
        drifts.extend(Drift("removed", name, v) for v in old)
        drifts.extend(Drift("added", name, v) for v in new)
    return drifts


def _changes(e: ModelEntry, m: LockedModel) -> list[Drift]:
    def drift(kind: DriftKind, wanted: object, have: object) -> Drift:
        return Drift(kind, e.name, e.version, _show(wanted), _show(have))

    found = []
    if e.kind != m.kind:
        found.append(drift("kind", e.kind, m.kind))
    if e.kind == m.kind == "file" and e.file and m.files and e.file != m.files[0].path:
        found.append(drift("file", e.file, m.files[0].path))
    if e.format is not None and e.format != m.format:
        found.append(drift("format", e.format, m.format))
    if e.digest is not None and e.digest != m.digest:
        found.append(drift("digest", e.digest, m.digest))
    sources = [strip_credentials(s) for s in e.sources]
    if sources != m.sources:
        found.append(drift("source", sources, m.sources))
    return found


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(redact_url, value)) + "]"
    return "none" if value is None else str(value)


def format_drift(drifts: Iterable[Drift]) -> str:
    """One line per drift (`+` added, `-` removed, `~` changed); empty when in sync."""
    return "\n".join(map(str, drifts))


def require_in_sync(manifest: Manifest, lock: Lockfile, file: str = LOCKFILE_NAME) -> None:
    """Raise :class:`DriftError` (exit 3) listing every drift, as `fetch --locked` needs."""
    drifts = diff(manifest, lock)
    if drifts:
        problem = "the manifest and the lockfile disagree:\n" + format_drift(drifts)
        raise DriftError(file, None, problem, hint="run `vvstore lock` to update the lockfile")
