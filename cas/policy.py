"""The gc policy and planner: which blobs to delete, and why. Pure: values in, a plan out.

`plan_gc` considers only *candidates*: blobs that no root references, that are not pinned
(unless `keep_pinned` is off) and that were last used at least `grace` seconds ago
(`now - mtime >= grace`), so a blob that a concurrent add or fetch just published survives
until its lockfile is written. Among the candidates, in this order:

1. with a `ttl`, every one unused for longer than it (`now - mtime > ttl`);
2. with a `max_size`, then, while the store is bigger than the cap, the least recently used
   (oldest mtime first, ties broken by digest so that a plan is deterministic);
3. with neither, every candidate, with reason `unreferenced` (what `dvc gc` does).

Candidates are sorted once by (mtime, digest): the TTL victims are a prefix of that order and
the LRU victims the run right after it, so planning is O(n log n).

Example:
    >>> from cas.blobs import BlobStat
    >>> from cas.digest import hash_bytes
    >>> old, new, used = (hash_bytes(b) for b in (b"old", b"new", b"used"))
    >>> stats = [BlobStat(old, 300, 0.0), BlobStat(new, 200, 39 * DAY), BlobStat(used, 500, 0.0)]
    >>> plan = plan_gc(stats, {used}, set(), CachePolicy.from_strings(ttl="30d"), now=41 * DAY)
    >>> [v.reason for v in plan.delete], plan.keep_bytes
    (['unreferenced, unused for 41 days > ttl 30d'], 700)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .digest import Digest
from .errors import UsageError
from .units import format_age, format_size, parse_age, parse_size

if TYPE_CHECKING:  # only the type: this module never imports the I/O modules
    from .blobs import BlobStat

DAY = 86400.0
DEFAULT_GRACE = DAY  # longer than a large multi-file fetch takes between publish and lockfile


@dataclass(frozen=True)
class CachePolicy:
    """What gc may delete. Sizes in bytes, ages in seconds; `None` means no such limit.

    Attributes:
        max_size: cap on the whole store's size; referenced blobs count, only others go.
        ttl: unreferenced blobs unused for longer than this go.
        grace: blobs used more recently than this stay, whatever else the policy says.
        keep_pinned: pinned blobs are kept like referenced ones; `False` ignores pins.
    """

    max_size: int | None = None
    ttl: float | None = None
    grace: float = DEFAULT_GRACE
    keep_pinned: bool = True

    def __post_init__(self) -> None:
        for name in ("max_size", "ttl", "grace"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < math.inf:  # NaN fails too
                raise UsageError(f"invalid {name} {value!r}: expected a finite number >= 0")

    @classmethod
    def from_strings(
        cls,
        max_size: str | int | None = None,
        ttl: str | None = None,
        grace: str | None = None,
        keep_pinned: bool = True,
    ) -> CachePolicy:
        """A policy from human units (`"50GB"`, `"30d"`); grace defaults to one day.

        Example:
            >>> CachePolicy.from_strings("50GB", "30d", "1h")
            CachePolicy(max_size=50000000000, ttl=2592000.0, grace=3600.0, keep_pinned=True)
        """
        return cls(
            None if max_size is None else parse_size(max_size),
            None if ttl is None else parse_age(ttl),
            DEFAULT_GRACE if grace is None else parse_age(grace),
            keep_pinned,
        )


@dataclass(frozen=True)
class Victim:
    """A blob the plan deletes; `rule` is `ttl`, `lru` or `unreferenced`; `owner` a model."""

    digest: Digest
    size: int
    mtime: float
    rule: str
    reason: str
    owner: str | None = None

    def describe(self) -> str:
        """One line for people: short digest, size, owner, reason."""
        owner = f", {self.owner}" if self.owner else ""
        return f"{self.digest.short} ({format_size(self.size)}{owner}): {self.reason}"


@dataclass(frozen=True)
class GcPlan:
    """What to delete, in order, and the bytes that remain (see the module docstring)."""

    policy: CachePolicy
    delete: list[Victim]
    total_bytes: int
    referenced_bytes: int
    pinned_bytes: int  # kept only because pinned (not also referenced)
    grace_bytes: int  # unreferenced, unpinned, used within the grace period
    keep_bytes: int
    over_cap_by: int  # referenced + pinned + grace bytes beyond max_size, else 0

    @property
    def delete_bytes(self) -> int:
        return self.total_bytes - self.keep_bytes

    def summary(self) -> str:
        """Totals for people; each victim's line is :meth:`Victim.describe`."""
        f, n = format_size, len(self.delete)
        head = f"delete {n} blob{'' if n == 1 else 's'} ({f(self.delete_bytes)})"
        text = (
            f"{head}; keep {f(self.keep_bytes)} of {f(self.total_bytes)} "
            f"({f(self.referenced_bytes)} referenced, {f(self.pinned_bytes)} pinned, "
            f"{f(self.grace_bytes)} used within the last {format_age(self.policy.grace)})"
        )
        if self.over_cap_by:
            text += (
                f"\nstill {f(self.over_cap_by)} over the {f(self.policy.max_size or 0)} cap: "
                "referenced, pinned and recently used blobs are never deleted"
            )
        return text

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: digests as `blake3:<hex>` strings, sizes in bytes, times in seconds."""
        out = asdict(self)
        out["delete"] = [{**asdict(v), "digest": str(v.digest)} for v in self.delete]
        out["delete_bytes"] = self.delete_bytes
        return out


def plan_gc(
    blob_stats: Iterable[BlobStat],
    referenced: AbstractSet[Digest],
    pinned: AbstractSet[Digest],
    policy: CachePolicy,
    now: float,
    owners: Mapping[Digest, str] | None = None,
) -> GcPlan:
    """Plan a gc of `blob_stats` under `policy` at time `now`; a repeated digest counts once.

    `owners` maps digests to the model they last belonged to, for the victims' `owner`.
    """
    candidates, total, ref, pin, young = _partition(blob_stats, referenced, pinned, policy, now)
    ttl_end, end = _cut(candidates, total, policy, now)
    owners, cap = owners or {}, policy.max_size
    limit = f"ttl {format_age(policy.ttl or 0, short=True)}"
    victims = [
        _victim(s, "ttl", f"unreferenced, unused for {format_age(now - s.mtime)} > {limit}", owners)
        for s in candidates[:ttl_end]
    ]
    lru = (
        "unreferenced" if cap is None else f"unreferenced, LRU eviction to reach {format_size(cap)}"
    )
    rule = "unreferenced" if cap is None else "lru"
    victims += [_victim(s, rule, lru, owners) for s in candidates[ttl_end:end]]
    keep = total - sum(v.size for v in victims)
    over = 0 if cap is None else max(0, ref + pin + young - cap)
    return GcPlan(policy, victims, total, ref, pin, young, keep, over)


def _partition(
    stats: Iterable[BlobStat],
    referenced: AbstractSet[Digest],
    pinned: AbstractSet[Digest],
    policy: CachePolicy,
    now: float,
) -> tuple[list[BlobStat], int, int, int, int]:
    """Candidates sorted oldest first, and the total, referenced, pinned and in-grace bytes."""
    seen: set[Digest] = set()
    total = ref = pin = young = 0
    candidates: list[BlobStat] = []
    for s in stats:
        if s.digest in seen:
            continue
        seen.add(s.digest)
        total += s.size
        if s.digest in referenced:
            ref += s.size
        elif policy.keep_pinned and s.digest in pinned:
            pin += s.size
        elif now - s.mtime < policy.grace:
            young += s.size
        else:
            candidates.append(s)
    candidates.sort(key=lambda s: (s.mtime, s.digest))
    return candidates, total, ref, pin, young


def _victim(s: BlobStat, rule: str, reason: str, owners: Mapping[Digest, str]) -> Victim:
    return Victim(s.digest, s.size, s.mtime, rule, reason, owners.get(s.digest))


def _cut(
    candidates: list[BlobStat], total: int, policy: CachePolicy, now: float
) -> tuple[int, int]:
    """Where the TTL victims end and where the LRU ones end, in candidates sorted oldest first."""
    ttl_end, n = 0, len(candidates)
    if policy.ttl is None and policy.max_size is None:
        return 0, n  # no limit set: every candidate goes
    while policy.ttl is not None and ttl_end < n and now - candidates[ttl_end].mtime > policy.ttl:
        ttl_end += 1
    end, keep = ttl_end, total - sum(s.size for s in candidates[:ttl_end])
    while policy.max_size is not None and end < n and keep > policy.max_size:
        keep -= candidates[end].size
        end += 1
    return ttl_end, end
