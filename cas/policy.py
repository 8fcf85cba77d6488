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
from operator import attrgetter
from typing import TYPE_CHECKING

from .digest import Digest
from .errors import UsageError
from .units import format_age, format_size, parse_age, parse_size

if TYPE_CHECKING:  # only the type: this module never imports the I/O modules
    from .blobs import BlobStat

DAY = 86400.0
DEFAULT_GRACE = DAY  # outlasts a long multi-file fetch between a publish and its lockfile write


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

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, the digest as its `blake3:<hex>` string."""
        return {**vars(self), "digest": str(self.digest)}


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
        totals = ("total", "referenced", "pinned", "grace", "keep", "delete")
        return {
            "policy": asdict(self.policy),
            "delete": [v.to_dict() for v in self.delete],
            **{f"{k}_bytes": getattr(self, f"{k}_bytes") for k in totals},
            "over_cap_by": self.over_cap_by,
        }


def plan_gc(
    blob_stats: Iterable[BlobStat],
    referenced: AbstractSet[Digest],
    pinned: AbstractSet[Digest],
    policy: CachePolicy,
    now: float,
    owners: Mapping[Digest, str] | None = None,
) -> GcPlan:
    """Plan a gc: which blobs go, in order, with reasons (rules in the module docstring).

    Args:
        blob_stats: every blob in the store (a repeated digest counts once).
        referenced: digests some root needs (trees already expanded); never planned.
        pinned: digests pinned explicitly; never planned while `policy.keep_pinned`.
        policy: the limits; see :class:`CachePolicy`.
        now: the current time, in the same clock as the mtimes (`time.time()`).
        owners: the model each digest last belonged to, copied into `Victim.owner`.

    Returns:
        The plan; O(n log n) in the number of blobs.
    """
    candidates, total, ref, pin, young = _partition(blob_stats, referenced, pinned, policy, now)
    ttl_end, end = _cut(candidates, total, policy, now)
    owners, cap = owners or {}, policy.max_size
    limit = f"ttl {format_age(policy.ttl or 0, short=True)}"
    victims = [
        _victim(s, "ttl", f"unreferenced, unused for {format_age(now - s.mtime)} > {limit}", owners)
        for s in candidates[:ttl_end]
    ]
    rule, reason = "unreferenced", "unreferenced"  # no limit set: all candidates (as dvc gc)
    if cap is not None:
        rule, reason = "lru", f"unreferenced, LRU eviction to reach {format_size(cap)}"
    victims += [_victim(s, rule, reason, owners) for s in candidates[ttl_end:end]]
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
    # Membership by hex string: a str caches its hash, while Digest's dataclass hash runs Python.
    ref_hex = {d.hex for d in referenced}
    pin_hex = {d.hex for d in pinned} if policy.keep_pinned else set()
    seen: set[str] = set()
    total = ref = pin = young = 0
    candidates: list[BlobStat] = []
    for s in stats:
        h = s.digest.hex
        if h in seen:
            continue
        seen.add(h)
        total += s.size
        if h in ref_hex:
            ref += s.size
        elif h in pin_hex:
            pin += s.size
        elif now - s.mtime < policy.grace:
            young += s.size
        else:
            candidates.append(s)
    candidates.sort(key=attrgetter("mtime", "digest.hex"))
    return candidates, total, ref, pin, young


def _victim(s: BlobStat, rule: str, reason: str, owners: Mapping[Digest, str]) -> Victim:
    return Victim(s.digest, s.size, s.mtime, rule, reason, owners.get(s.digest) if owners else None)


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
