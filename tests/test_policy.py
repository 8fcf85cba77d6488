"""The gc policy and planner (cas/policy.py): properties over random stores, then examples."""

from __future__ import annotations

import doctest
import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas import policy as policy_module
from cas.blobs import BlobStat
from cas.digest import Digest
from cas.errors import UsageError
from cas.policy import DAY, DEFAULT_GRACE, CachePolicy, GcPlan, plan_gc

NOW = 1_000_000.0


def digest(i: int) -> Digest:
    return Digest(f"{i:064x}")


@dataclass
class Store:
    stats: list[BlobStat]
    referenced: set[Digest]
    pinned: set[Digest]
    policy: CachePolicy


@st.composite
def stores(draw: st.DrawFn) -> Store:
    """Random stores: sizes and mtimes drawn from small ranges, so ties and zero sizes happen."""
    blobs = draw(
        st.lists(
            st.tuples(
                st.integers(0, 1000),  # size
                st.integers(0, 100) | st.floats(0, 100, allow_nan=False),  # days ago, mixed
                st.sampled_from(["free", "free", "ref", "pin", "both"]),
            ),
            max_size=40,
        )
    )
    stats, referenced, pinned = [], set(), set()
    for i, (size, days_ago, role) in enumerate(blobs):
        d = digest(i)
        stats.append(BlobStat(d, size, NOW - days_ago * DAY))
        if role in ("ref", "both"):
            referenced.add(d)
        if role in ("pin", "both"):
            pinned.add(d)
    total = sum(s.size for s in stats)
    days = st.integers(0, 100).map(lambda n: n * DAY) | st.floats(0, 100 * DAY, allow_nan=False)
    policy = CachePolicy(
        max_size=draw(st.none() | st.integers(0, total + 10)),
        ttl=draw(st.none() | days),
        grace=draw(days),
        keep_pinned=draw(st.booleans()),
    )
    return Store(stats, referenced, pinned, policy)


def plan(store: Store) -> GcPlan:
    return plan_gc(store.stats, store.referenced, store.pinned, store.policy, NOW)


def protected(store: Store, s: BlobStat) -> bool:
    """Referenced, pinned (when pins count) or used within the grace period."""
    return (
        s.digest in store.referenced
        or (store.policy.keep_pinned and s.digest in store.pinned)
        or NOW - s.mtime < store.policy.grace
    )


def candidates(store: Store) -> list[BlobStat]:
    return [s for s in store.stats if not protected(store, s)]


@settings(max_examples=400)
@given(stores())
def test_never_deletes_a_referenced_pinned_or_recent_blob(store: Store) -> None:
    for v in plan(store).delete:
        assert v.digest not in store.referenced
        if store.policy.keep_pinned:
            assert v.digest not in store.pinned
        assert NOW - v.mtime >= store.policy.grace


@settings(max_examples=400)
@given(stores())
def test_no_duplicates_and_bytes_add_up(store: Store) -> None:
    p = plan(store)
    digests = [v.digest for v in p.delete]
    assert len(digests) == len(set(digests))
    assert set(digests) <= {s.digest for s in store.stats}
    assert p.total_bytes == sum(s.size for s in store.stats)
    assert p.keep_bytes == p.total_bytes - sum(v.size for v in p.delete)
    assert p.delete_bytes == sum(v.size for v in p.delete)
    free = sum(s.size for s in candidates(store))
    assert p.referenced_bytes + p.pinned_bytes + p.grace_bytes + free == p.total_bytes


@settings(max_examples=400)
@given(stores())
def test_reaches_the_cap_whenever_unreferenced_data_allows(store: Store) -> None:
    cap = store.policy.max_size
    p = plan(store)
    stuck = sum(s.size for s in store.stats if protected(store, s))
    if cap is None:
        assert p.over_cap_by == 0
        return
    if stuck <= cap:
        assert p.keep_bytes <= cap
    assert p.over_cap_by == max(0, stuck - cap)
    assert p.over_cap_by == max(0, p.keep_bytes - cap)


@settings(max_examples=400)
@given(stores())
def test_lru_victims_are_the_oldest_and_no_more_than_needed(store: Store) -> None:
    p = plan(store)
    lru = [v for v in p.delete if v.rule == "lru"]
    gone = {v.digest for v in p.delete}
    survivors = [s for s in candidates(store) if s.digest not in gone]
    for v in lru:
        assert all(v.mtime <= s.mtime for s in survivors)
    assert [(v.mtime, v.digest) for v in lru] == sorted((v.mtime, v.digest) for v in lru)
    if lru:
        assert store.policy.max_size is not None
        assert p.keep_bytes + lru[-1].size > store.policy.max_size  # the last one was needed


@settings(max_examples=400)
@given(stores())
def test_ttl_victims_are_exactly_the_expired_candidates(store: Store) -> None:
    p = plan(store)
    ttl_victims = {v.digest for v in p.delete if v.rule == "ttl"}
    ttl = store.policy.ttl
    expired = {s.digest for s in candidates(store) if ttl is not None and NOW - s.mtime > ttl}
    assert ttl_victims == expired
    first_lru = next((i for i, v in enumerate(p.delete) if v.rule != "ttl"), len(p.delete))
    assert all(v.rule == "ttl" for v in p.delete[:first_lru])  # TTL victims come first
    assert all(v.rule != "ttl" for v in p.delete[first_lru:])


@settings(max_examples=200)
@given(stores())
def test_without_limits_every_candidate_goes(store: Store) -> None:
    unlimited = CachePolicy(grace=store.policy.grace, keep_pinned=store.policy.keep_pinned)
    p = plan_gc(store.stats, store.referenced, store.pinned, unlimited, NOW)
    assert {v.digest for v in p.delete} == {s.digest for s in candidates(store)}
    assert all(v.rule == "unreferenced" and v.reason == "unreferenced" for v in p.delete)


@settings(max_examples=200)
@given(stores(), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_listing_order(store: Store, rnd: random.Random) -> None:
    shuffled = list(store.stats)
    rnd.shuffle(shuffled)
    again = plan_gc(shuffled, store.referenced, store.pinned, store.policy, NOW)
    assert again == plan(store)


# --- examples ------------------------------------------------------------------------------


def test_doctests() -> None:
    assert doctest.testmod(policy_module).failed == 0


def test_reasons_and_owners() -> None:
    stats = [
        BlobStat(digest(1), 10 * 10**9, NOW - 41 * DAY),  # past the ttl
        BlobStat(digest(2), 30 * 10**9, NOW - 10 * DAY),  # LRU victim
        BlobStat(digest(3), 30 * 10**9, NOW - 5 * DAY),  # survives: cap reached
        BlobStat(digest(4), 20 * 10**9, NOW - 90 * DAY),  # referenced
    ]
    policy = CachePolicy.from_strings(max_size="50GB", ttl="30d")
    p = plan_gc(stats, {digest(4)}, set(), policy, NOW, owners={digest(1): "acme/tiny@1.0"})
    assert [(v.digest, v.rule, v.reason, v.owner) for v in p.delete] == [
        (digest(1), "ttl", "unreferenced, unused for 41 days > ttl 30d", "acme/tiny@1.0"),
        (digest(2), "lru", "unreferenced, LRU eviction to reach 50 GB", None),
    ]
    assert p.keep_bytes == 50 * 10**9 and p.over_cap_by == 0
    assert p.delete[0].describe() == (
        f"{digest(1).short} (10 GB, acme/tiny@1.0): unreferenced, unused for 41 days > ttl 30d"
    )
    assert p.summary() == (
        "delete 2 blobs (40 GB); keep 50 GB of 90 GB "
        "(20 GB referenced, 0 B pinned, 0 B used within the last 1 day)"
    )


def test_over_cap_is_reported_and_nothing_protected_goes() -> None:
    stats = [
        BlobStat(digest(1), 600, NOW - 9 * DAY),  # referenced
        BlobStat(digest(2), 300, NOW - 9 * DAY),  # pinned
        BlobStat(digest(3), 200, NOW - 60.0),  # in grace
        BlobStat(digest(4), 100, NOW - 9 * DAY),  # the only candidate
    ]
    p = plan_gc(stats, {digest(1)}, {digest(2)}, CachePolicy(max_size=1000), NOW)
    assert [v.digest for v in p.delete] == [digest(4)]
    assert (p.referenced_bytes, p.pinned_bytes, p.grace_bytes) == (600, 300, 200)
    assert p.keep_bytes == 1100 and p.over_cap_by == 100
    assert "still 100 B over the 1 KB cap" in p.summary()


def test_pins_count_only_when_kept() -> None:
    stats = [BlobStat(digest(1), 5, NOW - 9 * DAY)]
    assert plan_gc(stats, set(), {digest(1)}, CachePolicy(), NOW).delete == []
    loose = plan_gc(stats, set(), {digest(1)}, CachePolicy(keep_pinned=False), NOW)
    assert [v.digest for v in loose.delete] == [digest(1)] and loose.pinned_bytes == 0


def test_under_the_cap_nothing_goes_and_ties_break_by_digest() -> None:
    stats = [BlobStat(digest(i), 10, NOW - DAY * 2) for i in (3, 1, 2)]
    assert plan_gc(stats, set(), set(), CachePolicy(max_size=30), NOW).delete == []
    p = plan_gc(stats, set(), set(), CachePolicy(max_size=15), NOW)
    assert [v.digest for v in p.delete] == [digest(1), digest(2)]


def test_grace_and_ttl_boundaries() -> None:
    stats = [BlobStat(digest(1), 1, NOW - 3600.0), BlobStat(digest(2), 1, NOW - 3599.0)]
    p = plan_gc(stats, set(), set(), CachePolicy(ttl=3600.0, grace=3599.0), NOW)
    assert p.delete == []  # age == ttl is not past it
    p = plan_gc(stats, set(), set(), CachePolicy(ttl=3599.5, grace=3600.0), NOW)
    assert [v.digest for v in p.delete] == [digest(1)]  # age == grace is out of grace


def test_repeated_stats_are_planned_once() -> None:
    stat = BlobStat(digest(1), 7, NOW - 9 * DAY)
    p = plan_gc([stat, stat], set(), set(), CachePolicy(), NOW)
    assert len(p.delete) == 1 and p.total_bytes == 7 and p.keep_bytes == 0


def test_to_dict_is_json() -> None:
    stats = [BlobStat(digest(1), 7, NOW - 40 * DAY)]
    p = plan_gc(stats, set(), set(), CachePolicy.from_strings(ttl="30d"), NOW, {digest(1): "m"})
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["delete"] == [
        {
            "digest": str(digest(1)),
            "size": 7,
            "mtime": NOW - 40 * DAY,
            "rule": "ttl",
            "reason": "unreferenced, unused for 40 days > ttl 30d",
            "owner": "m",
        }
    ]
    assert doc["policy"] == {
        "max_size": None,
        "ttl": 30 * DAY,
        "grace": DEFAULT_GRACE,
        "keep_pinned": True,
    }
    assert (doc["keep_bytes"], doc["delete_bytes"], doc["over_cap_by"]) == (0, 7, 0)


def test_summary_of_an_empty_plan() -> None:
    p = plan_gc([], set(), set(), CachePolicy(grace=3600.0), NOW)
    assert p.summary() == (
        "delete 0 blobs (0 B); keep 0 B of 0 B "
        "(0 B referenced, 0 B pinned, 0 B used within the last 1 hour)"
    )


def test_from_strings() -> None:
    assert CachePolicy.from_strings() == CachePolicy(None, None, DEFAULT_GRACE, True)
    assert DEFAULT_GRACE == DAY
    p = CachePolicy.from_strings(max_size="500MiB", ttl="12h", grace="0")
    assert (p.max_size, p.ttl, p.grace) == (500 * 2**20, 43200.0, 0.0)
    assert CachePolicy.from_strings(max_size=1000).max_size == 1000


@pytest.mark.parametrize(
    "kwargs",
    [{"max_size": "50G"}, {"ttl": "30"}, {"grace": "-1h"}, {"max_size": "-5GB"}],
)
def test_from_strings_refuses_bad_units(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=repr(next(iter(kwargs.values())))):
        CachePolicy.from_strings(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_size": -1}, {"ttl": -1.0}, {"grace": float("nan")}, {"ttl": float("inf")}],
)
def test_policy_refuses_bad_numbers(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        CachePolicy(**kwargs)


def test_plans_100k_blobs() -> None:
    """Completes (the issue's target is well under 2 s; not timed here, to stay stable in CI)."""
    rnd = random.Random(5)
    stats = [
        BlobStat(
            Digest(f"{rnd.getrandbits(256):064x}"),
            rnd.randrange(1, 10**7),
            NOW - rnd.random() * 90 * DAY,
        )
        for _ in range(100_000)
    ]
    referenced = {s.digest for s in stats[::3]}
    pinned = {s.digest for s in stats[1::50]}
    total = sum(s.size for s in stats)
    p = plan_gc(stats, referenced, pinned, CachePolicy(max_size=total // 2, ttl=60 * DAY), NOW)
    assert p.keep_bytes <= total // 2
    assert {v.rule for v in p.delete} == {"ttl", "lru"}
