"""ModelCacheManager (cas/cache.py) over a real store: the seed API, mark, and sweep safety.

The planner itself is tested in tests/test_policy.py; here the store, roots and pins are real
(projects made with DefaultModelManager) and blob ages are set with `os.utime`.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from cas.blobs import BlobStore
from cas.cache import ModelCacheManager
from cas.digest import Digest
from cas.errors import BlobNotFoundError, LockfileError, UsageError
from cas.manager import DefaultModelManager
from cas.policy import CachePolicy, plan_gc

DAY = 86400.0


def data(tag: str, size: int) -> bytes:
    return (tag.encode() * (size // max(1, len(tag)) + 1))[:size]


def dig(b: bytes) -> Digest:
    return Digest(blake3.blake3(b).hexdigest())


def listing(store: BlobStore) -> dict[str, tuple[int, int, int]]:
    """Every file under the store except locks/: (size, mtime_ns, mode)."""
    out = {}
    for dirpath, _, filenames in os.walk(store.root):
        if os.path.relpath(dirpath, store.root).split(os.sep)[0] == "locks":
            continue
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, store.root)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def set_age(store: BlobStore, d: Digest, days: float) -> float:
    t = time.time() - days * DAY
    os.utime(store.path(d), (t, t))
    return os.stat(store.path(d)).st_mtime


class Proj:
    def __init__(self, path: Path, store: BlobStore) -> None:
        self.m = DefaultModelManager(path, store)
        self.m.init()
        self.path = path

    def add(self, fname: str, content: bytes, name: str | None = None) -> Digest:
        f = self.path / fname
        f.write_bytes(content)
        [r] = self.m.add([str(f)], name=name)
        return Digest.parse(r.entry.digest)

    def add_tree(self, dirname: str, files: dict[str, bytes]) -> tuple[Digest, list[Digest]]:
        d = self.path / dirname
        for rel, content in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(content)
        [r] = self.m.add([str(d)])
        return Digest.parse(r.entry.digest), [dig(c) for c in files.values()]


@pytest.fixture
def cache(blob_store: BlobStore) -> ModelCacheManager:
    return ModelCacheManager(blob_store)


@pytest.fixture
def world(tmp_path: Path, blob_store: BlobStore) -> dict[str, Any]:
    """Two projects sharing one blob; a tree; a removed model (garbage); a pinned garbage blob."""
    a, b = Proj(tmp_path / "a", blob_store), Proj(tmp_path / "b", blob_store)
    d = {
        "shared": a.add("s.bin", data("shared", 3000)),
        "a_only": a.add("a.bin", data("aonly", 1000)),
        "gone": a.add("gone.bin", data("gone", 500)),
        "pinned": a.add("pin.bin", data("pinned", 400)),
    }
    assert b.add("s2.bin", data("shared", 3000)) == d["shared"]
    d["tree"], (d["cfg"], d["w"]) = b.add_tree(
        "t", {"config.json": b"{}", "w.bin": data("w", 2000)}
    )
    a.m.remove("gone")
    a.m.remove("pin")
    ModelCacheManager(blob_store).pin([d["pinned"]], "blake3:" + d["pinned"].hex)
    return {"a": a, "b": b, "d": d}


# --- mark -----------------------------------------------------------------------------------


def test_mark_unions_every_root_and_pins_with_trees_expanded(
    world: dict[str, Any], cache: ModelCacheManager
) -> None:
    d = world["d"]
    marks = cache.mark()
    assert marks.referenced == {d["shared"], d["a_only"], d["tree"], d["cfg"], d["w"]}
    assert marks.pinned == {d["pinned"]}
    assert marks.dropped_roots == []
    assert {ref for _, ref, _, _ in marks.models} == {"s@1", "a@1", "s2@1", "t@1"}
    assert marks.owners[d["pinned"]].startswith("pinned ")


def test_gc_grace_zero_keeps_referenced_pinned_and_tree_children(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]
    report = cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert [v.digest for v in report.deleted] == [d["gone"]]
    assert report.deleted[0].owner == "gone@1"  # from the audit log's add line
    assert report.freed == 500
    assert {b.digest for b in blob_store.iter_blobs()} == set(d.values()) - {d["gone"]}
    for b in blob_store.iter_blobs():
        assert blake3.blake3(blob_store.path(b.digest).read_bytes()).hexdigest() == b.digest.hex


def test_default_policy_keeps_blobs_within_a_day(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    report = cache.enforce_cache_policy()
    assert report.plan.delete == [] and report.deleted == []
    assert blob_store.has(world["d"]["gone"])
    set_age(blob_store, world["d"]["gone"], 1.01)
    assert [v.digest for v in cache.enforce_cache_policy().deleted] == [world["d"]["gone"]]


def test_a_stale_root_is_dropped_and_logged(
    world: dict[str, Any],
    cache: ModelCacheManager,
    blob_store: BlobStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import shutil

    b, d = world["b"], world["d"]
    entry = blob_store.layout.root_entry(b.m.lockfile_path)
    assert entry.exists()
    shutil.rmtree(b.path)
    with caplog.at_level("INFO", logger="vvstore"):
        report = cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert report.dropped_roots == [str(b.m.lockfile_path)]
    assert not entry.exists()
    assert any("dropping root" in r.getMessage() for r in caplog.records)
    assert {v.digest for v in report.deleted} == {d["gone"], d["tree"], d["cfg"], d["w"]}
    assert blob_store.has(d["shared"])  # still a's


def test_an_unreadable_root_fails_closed(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    lockfile = world["b"].m.lockfile_path
    lockfile.write_text("not = [toml\n")
    before = listing(blob_store)
    with pytest.raises(LockfileError) as e:
        cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert e.value.exit_code == 3 and str(lockfile) in str(e.value)
    with pytest.raises(LockfileError):
        cache.clear_cache()
    assert listing(blob_store) == before


def test_a_lockfile_that_is_a_directory_fails_closed(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    lockfile = world["b"].m.lockfile_path
    lockfile.unlink()
    lockfile.mkdir()
    before = listing(blob_store)
    with pytest.raises(LockfileError) as e:
        cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert str(lockfile) in str(e.value)
    assert listing(blob_store) == before


def test_a_missing_referenced_blob_stops_gc_unless_allowed(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]
    blob_store.delete(d["w"])
    before = listing(blob_store)
    with pytest.raises(BlobNotFoundError) as e:
        cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert e.value.exit_code == 4 and d["w"].hex in str(e.value)
    assert listing(blob_store) == before
    report = cache.enforce_cache_policy(CachePolicy(grace=0.0), allow_missing=True)
    assert report.missing == [d["w"]]
    assert [v.digest for v in report.deleted] == [d["gone"]]


# --- the seed API ---------------------------------------------------------------------------


def test_add_to_cache_a_path_and_a_digest(
    tmp_path: Path, cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights" * 100)
    d = cache.add_to_cache(src)
    assert d == dig(b"weights" * 100) and blob_store.path(d).read_bytes() == b"weights" * 100
    assert stat.S_IMODE(os.stat(blob_store.path(d)).st_mode) == 0o444
    assert cache.add_to_cache(str(src)) == d  # again: same blob
    old = set_age(blob_store, d, 10)
    assert cache.add_to_cache(str(d)) == d  # a digest string: checks presence and freshens
    assert os.stat(blob_store.path(d)).st_mtime > old + 9 * DAY
    set_age(blob_store, d, 10)
    assert cache.add_to_cache(d) == d  # a Digest
    assert time.time() - os.stat(blob_store.path(d)).st_mtime < 60
    with pytest.raises(BlobNotFoundError) as e:
        cache.add_to_cache("blake3:" + "0" * 64)
    assert e.value.exit_code == 4
    with pytest.raises(UsageError):
        cache.add_to_cache("blake3:nothex")


def test_remove_from_cache_refuses_a_referenced_or_pinned_digest(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]
    for key in ("shared", "cfg", "tree", "pinned"):
        with pytest.raises(UsageError) as e:
            cache.remove_from_cache(d[key])
        assert e.value.exit_code == 2
        assert blob_store.has(d[key])
    with pytest.raises(UsageError) as e:
        cache.remove_from_cache(str(d["a_only"]))
    assert "a@1" in str(e.value)  # names who uses it
    assert cache.remove_from_cache(d["gone"]) is True  # unreferenced: fine
    assert not blob_store.has(d["gone"])
    assert cache.remove_from_cache(d["gone"]) is False  # already gone
    assert cache.remove_from_cache(d["shared"], force=True) is True
    assert not blob_store.has(d["shared"])
    removes = [e for e in blob_store.audit.entries() if e["action"] == "remove" and e.get("reason")]
    assert [e["digest"] for e in removes] == [str(d["gone"]), str(d["shared"])]


def test_enforce_cache_policy_dry_run_returns_a_report_and_changes_nothing(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]
    set_age(blob_store, d["gone"], 50)
    stale = blob_store.layout.tmp / "stale.part"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 3 * DAY,) * 2)
    before = listing(blob_store)
    audit_before = blob_store.layout.audit_log.read_bytes()
    report = cache.enforce_cache_policy(CachePolicy.from_strings(ttl="30d"), dry_run=True)
    assert report.dry_run is True
    assert [(v.digest, v.rule, v.owner) for v in report.plan.delete] == [
        (d["gone"], "ttl", "gone@1")
    ]
    assert "unused for 50 days > ttl 30d" in report.plan.delete[0].reason
    assert report.deleted == [] and report.freed == 0 and report.tmp_cleaned == 0
    doc = report.to_dict()
    assert doc["dry_run"] is True and doc["plan"]["delete"][0]["digest"] == str(d["gone"])
    assert listing(blob_store) == before
    assert blob_store.layout.audit_log.read_bytes() == audit_before
    # the same call for real does what the dry run said
    real = cache.enforce_cache_policy(CachePolicy.from_strings(ttl="30d"))
    assert [v.digest for v in real.deleted] == [d["gone"]] and real.tmp_cleaned == 1
    assert not stale.exists()


def test_dry_run_does_not_drop_a_stale_root(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    import shutil

    b = world["b"]
    entry = blob_store.layout.root_entry(b.m.lockfile_path)
    shutil.rmtree(b.path)
    before = listing(blob_store)
    report = cache.enforce_cache_policy(CachePolicy(grace=0.0), dry_run=True)
    assert report.dropped_roots == [str(b.m.lockfile_path)]  # said, not done
    assert entry.exists()
    assert listing(blob_store) == before
    cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert not entry.exists()


def test_list_cached_models(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    a, b, d = world["a"], world["b"], world["d"]
    t_shared = set_age(blob_store, d["shared"], 3)
    models = {m["ref"]: m for m in cache.list_cached_models()}
    assert set(models) == {"s@1", "a@1", "s2@1", "t@1"}
    assert models["s@1"] == {
        "ref": "s@1",
        "project": str(a.path),
        "digest": str(d["shared"]),
        "cached": True,
        "size": 3000,
        "last_used": t_shared,
    }
    assert models["s2@1"]["project"] == str(b.path) and models["s2@1"]["last_used"] == t_shared
    assert models["t@1"]["digest"] == str(d["tree"]) and models["t@1"]["size"] == 2002
    assert models["t@1"]["cached"] is True
    t_w = set_age(blob_store, d["w"], 1)
    t_cfg = set_age(blob_store, d["cfg"], 2)
    assert {m["ref"]: m for m in cache.list_cached_models()}["t@1"]["last_used"] == max(t_w, t_cfg)
    blob_store.delete(d["w"])
    models = {m["ref"]: m for m in cache.list_cached_models()}
    assert models["t@1"]["cached"] is False and models["t@1"]["size"] == 2
    assert models["t@1"]["last_used"] == t_cfg
    blob_store.delete(d["a_only"])
    models = {m["ref"]: m for m in cache.list_cached_models()}
    assert models["a@1"]["cached"] is False and models["a@1"]["size"] == 0
    assert models["a@1"]["last_used"] is None


def test_clear_cache_unreferenced_only(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]
    report = cache.clear_cache()  # grace 0: even a just-written unreferenced blob goes
    assert [v.digest for v in report.deleted] == [d["gone"]]
    assert {b.digest for b in blob_store.iter_blobs()} == set(d.values()) - {d["gone"]}


def test_clear_cache_everything(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]
    report = cache.clear_cache(unreferenced_only=False)
    assert {v.digest for v in report.deleted} == set(d.values())
    assert list(blob_store.iter_blobs()) == []
    assert len([e for e in blob_store.audit.entries() if e["action"] == "gc"]) == len(d)


def test_pin_and_unpin_api(blob_store: BlobStore, cache: ModelCacheManager, tmp_path: Path) -> None:
    d = cache.add_to_cache(_write(tmp_path / "x", b"x" * 10))
    assert cache.pin([d], "x@1") == [d]
    assert cache.pin([d], "again") == []  # the first label stays
    assert cache.pins() == {d: "x@1"}
    assert cache.enforce_cache_policy(CachePolicy(grace=0.0)).deleted == []
    assert cache.unpin([d]) == [d] and cache.unpin([d]) == []
    assert cache.pins() == {}
    assert [v.digest for v in cache.enforce_cache_policy(CachePolicy(grace=0.0)).deleted] == [d]


def test_usage(world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore) -> None:
    d = world["d"]
    (blob_store.layout.tmp / "partial").write_bytes(b"p" * 77)
    u = cache.usage()
    tree_size = os.stat(blob_store.path(d["tree"])).st_size
    assert u["blobs"] == 7
    assert u["total_bytes"] == 3000 + 1000 + 500 + 400 + 2 + 2000 + tree_size
    assert u["referenced_bytes"] == 3000 + 1000 + 2 + 2000 + tree_size
    assert u["pinned_bytes"] == 400 and u["unreferenced_bytes"] == 500 and u["partial_bytes"] == 77
    assert u["dedup_saved_bytes"] >= 3000 - tree_size  # shared stored once for two projects


def _write(p: Path, content: bytes) -> Path:
    p.write_bytes(content)
    return p


# --- sweep safety ---------------------------------------------------------------------------


def _plan_one(cache: ModelCacheManager, d: Digest) -> Any:
    marks = cache.mark()
    plan = plan_gc(
        cache.store.iter_blobs(),
        marks.referenced,
        marks.pinned,
        CachePolicy(grace=0.0),
        time.time(),
    )
    [victim] = [v for v in plan.delete if v.digest == d]
    return victim


def test_sweep_keeps_a_victim_freshened_after_planning(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]["gone"]
    set_age(blob_store, d, 5)
    victim = _plan_one(cache, d)
    content = blob_store.path(d).read_bytes()
    os.utime(blob_store.path(d))  # another process used it after the plan
    fresh = os.stat(blob_store.path(d))
    assert cache._sweep(victim) is False
    assert blob_store.has(d)
    after = os.stat(blob_store.path(d))
    assert blob_store.path(d).read_bytes() == content
    assert (after.st_mtime_ns, after.st_size, stat.S_IMODE(after.st_mode)) == (
        fresh.st_mtime_ns,
        fresh.st_size,
        0o444,
    )
    assert after.st_nlink == 1  # no second name left behind
    assert [p.name for p in blob_store.layout.tmp.iterdir()] == []  # no hold debris
    assert not [e for e in blob_store.audit.entries() if e["action"] == "gc"]


def test_sweep_keeps_a_victim_republished_after_planning(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore, tmp_path: Path
) -> None:
    d = world["d"]["gone"]
    set_age(blob_store, d, 5)
    victim = _plan_one(cache, d)
    blob_store.publish_bytes(data("gone", 500))  # a concurrent add of the same bytes freshens it
    assert cache._sweep(victim) is False
    assert blob_store.path(d).read_bytes() == data("gone", 500)


def test_sweep_deletes_an_unchanged_victim_and_logs_it(
    world: dict[str, Any], cache: ModelCacheManager, blob_store: BlobStore
) -> None:
    d = world["d"]["gone"]
    set_age(blob_store, d, 5)
    victim = _plan_one(cache, d)
    assert cache._sweep(victim) is True
    assert not blob_store.has(d)
    assert [p.name for p in blob_store.layout.tmp.iterdir()] == []
    [line] = [e for e in blob_store.audit.entries() if e["action"] == "gc"]
    assert line["digest"] == str(d) and line["reason"] == "unreferenced" and line["size"] == "500"
    assert cache._sweep(victim) is False  # already gone: nothing to do


def test_freshen_during_gc_keeps_the_blob(
    world: dict[str, Any],
    cache: ModelCacheManager,
    blob_store: BlobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end through enforce_cache_policy: a blob used between plan and sweep survives
    and is reported as kept in use."""
    import cas.cache as cache_module

    d = world["d"]["gone"]
    set_age(blob_store, d, 5)
    real_plan = cache_module.plan_gc

    def plan_then_use(*args: Any, **kwargs: Any) -> Any:
        plan = real_plan(*args, **kwargs)
        blob_store.freshen(d)  # another process opens it right after the plan
        return plan

    monkeypatch.setattr(cache_module, "plan_gc", plan_then_use)
    report = cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert [v.digest for v in report.kept_in_use] == [d] and report.deleted == []
    assert blob_store.has(d)
    assert report.to_dict()["kept_in_use"] == [str(d)]
