"""`vvstore gc`, `pin`, `unpin`, `du` end to end over a real store shared by several projects.

Each project is a real `vvstore init` + `vvstore add` in its own directory, all on one store
(`$VVSTORE_HOME`). Blob ages are simulated with `os.utime` (a blob's last use is its mtime).
Commands run through click's CliRunner (fast, in-process); a few run the real executable too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import blake3
import pytest
from click.testing import CliRunner, Result

from cli.main import cli

DAY = 86400.0
HEX12 = re.compile(r"blake3:[0-9a-f]{12,64}")


# --- helpers -----------------------------------------------------------------------------------


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (
        result.exit_code,
        result.stdout,
        result.stderr,
        result.exception,
    )
    if code:
        assert isinstance(result.exception, SystemExit)  # mapped to an exit code, never escaped
    assert "Traceback" not in result.stderr
    return result


def run_json(*args: str) -> Any:
    return json.loads(run("--json", *args).stdout)


def payload(tag: str, size: int) -> bytes:
    """Deterministic, distinct bytes of an exact size."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{tag}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def hexof(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def blob(store: Path, h: str) -> Path:
    return store / "blobs" / "blake3" / h[:2] / h[2:]


def present(store: Path) -> set[str]:
    root = store / "blobs" / "blake3"
    return {p.parent.name + p.name for p in root.glob("*/*") if p.is_file()}


def age(store: Path, h: str, days: float) -> float:
    """Make blob `h` last used `days` ago; returns its new mtime."""
    t = time.time() - days * DAY
    os.utime(blob(store, h), (t, t))
    return t


class Project:
    """A project directory registered on the test store, driven through the CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        run("-C", str(path), "init")

    def vv(self, *args: str, code: int = 0) -> Result:
        return run("-C", str(self.path), *args, code=code)

    def vj(self, *args: str) -> Any:
        return run_json("-C", str(self.path), *args)

    def add(self, fname: str, data: bytes, *opts: str) -> str:
        f = self.path / fname
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        [doc] = self.vj("add", str(f), *opts)
        assert doc["digest"] == "blake3:" + hexof(data)
        return hexof(data)

    def add_tree(self, dirname: str, files: dict[str, bytes]) -> tuple[str, list[str]]:
        d = self.path / dirname
        for rel, data in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        [doc] = self.vj("add", str(d))
        assert doc["kind"] == "tree"
        return doc["digest"].split(":", 1)[1], [hexof(v) for v in files.values()]

    def gc(self, *args: str, code: int = 0) -> Result:
        return self.vv("gc", *args, code=code)

    def gc_json(self, *args: str) -> dict[str, Any]:
        return self.vj("gc", *args)

    @property
    def lockfile(self) -> Path:
        return self.path / "vvstore.lock"


def deleted_hexes(report: dict[str, Any]) -> set[str]:
    return {v["digest"].split(":", 1)[1] for v in report["deleted"]}


def planned_hexes(report: dict[str, Any]) -> set[str]:
    return {v["digest"].split(":", 1)[1] for v in report["plan"]["delete"]}


def audit(store: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (store / "audit.log").read_text().splitlines()]


def gc_lines(store: Path) -> list[dict[str, Any]]:
    return [e for e in audit(store) if e["action"] == "gc"]


def snapshot(store: Path) -> dict[str, tuple[Any, ...]]:
    """A full listing of the store: every path with its type, size, mode, mtime (ns) and, for
    files, a hash of the content (covers roots/ and pins/ entries and the audit log).

    `locks/` is left out: taking the gc lock (re)creates its lock file, which is coordination
    between processes, not store content."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(store):
        rel_dir = os.path.relpath(dirpath, store)
        if rel_dir == "locks" or rel_dir.startswith("locks" + os.sep):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, store)
            if rel == "locks":
                continue
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
        # the directories' own mtimes, too: a create-then-delete would show here
        out[rel_dir + "/."] = ("dir", os.lstat(dirpath).st_mtime_ns)
    return out


@pytest.fixture
def store(vv_home: Path) -> Path:
    return vv_home


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no project above it (gc of the store needs no project)."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


# Shared bytes: three projects hold the same file, so the store keeps it once.
SHARED = payload("shared", 4000)


@pytest.fixture
def three(tmp_path: Path, store: Path) -> dict[str, Any]:
    """p1: shared + only1 + junk (removed); p2: shared (another name) + only2;
    p3: a tree holding shared + only3."""
    p1, p2, p3 = (Project(tmp_path / n) for n in ("p1", "p2", "p3"))
    h = {
        "shared": p1.add("shared.bin", SHARED),
        "only1": p1.add("only1.bin", payload("only1", 1000)),
        "junk": p1.add("junk.bin", payload("junk", 700)),
    }
    assert p2.add("weights.bin", SHARED) == h["shared"]
    h["only2"] = p2.add("only2.bin", payload("only2", 2000))
    h["tree"], (tshared, h["only3"]) = p3.add_tree(
        "tiny", {"shared.bin": SHARED, "only3.bin": payload("only3", 3000)}
    )
    assert tshared == h["shared"]
    p1.vv("rm", "junk")
    return {"p1": p1, "p2": p2, "p3": p3, "h": h}


# --- several projects on one store ----------------------------------------------------------


def test_gc_never_removes_a_blob_any_project_references(three: dict[str, Any], store: Path) -> None:
    h = three["h"]
    before = present(store)
    assert before == set(h.values())
    for p in ("p1", "p2", "p3"):  # whichever project runs it, gc is of the whole store
        report = three[p].gc_json("--grace", "0s")
        assert deleted_hexes(report) <= {h["junk"]}
    assert present(store) == before - {h["junk"]}
    # and a gc with every limit at its tightest still keeps every referenced blob
    report = three["p2"].gc_json("--grace", "0", "--ttl", "0s", "--max-size", "0")
    assert report["deleted"] == []
    assert present(store) == before - {h["junk"]}
    assert report["plan"]["over_cap_by"] == report["plan"]["referenced_bytes"] > 0


def test_one_projects_rm_frees_only_its_now_unreferenced_blobs(
    three: dict[str, Any], store: Path
) -> None:
    h, p1 = three["h"], three["p1"]
    p1.gc("--grace", "0s")  # junk goes first
    p1.vv("rm", "shared")
    p1.vv("rm", "only1")
    report = p1.gc_json("--grace", "0s")
    assert deleted_hexes(report) == {h["only1"]}  # shared stays: p2 and p3 still use it
    assert present(store) == {h["shared"], h["only2"], h["only3"], h["tree"]}
    for h_ in present(store):
        assert hexof(blob(store, h_).read_bytes()) == h_
    # the other projects still read their models
    assert three["p2"].vv("cat", "weights").stdout_bytes == SHARED
    assert three["p3"].vv("cat", "tiny/shared.bin").stdout_bytes == SHARED


def test_stale_root_is_dropped_and_its_blobs_become_collectable(
    three: dict[str, Any], store: Path
) -> None:
    import shutil

    h, p2 = three["h"], three["p2"]
    roots_before = {e.read_text().strip(): e for e in (store / "roots").iterdir()}
    assert str(p2.lockfile) in roots_before
    shutil.rmtree(p2.path)  # the project is gone
    r = three["p1"].gc("--grace", "0s")
    assert "dropped root" in r.stderr and str(p2.lockfile) in r.stderr
    assert not roots_before[str(p2.lockfile)].exists()  # its root file is removed
    assert {e.read_text().strip() for e in (store / "roots").iterdir()} == {
        str(three["p1"].lockfile),
        str(three["p3"].lockfile),
    }
    # only2 was p2's alone: collected; shared is still p1's and p3's
    assert present(store) == {h["shared"], h["only1"], h["only3"], h["tree"]}
    deleted = [e["digest"] for e in gc_lines(store)]
    assert "blake3:" + h["only2"] in deleted and "blake3:" + h["shared"] not in deleted


def test_stale_root_in_json_report(three: dict[str, Any], store: Path, outside: Path) -> None:
    import shutil

    shutil.rmtree(three["p3"].path)
    report = run_json("gc", "--grace", "0s")  # from outside any project
    assert report["dropped_roots"] == [str(three["p3"].lockfile)]
    assert deleted_hexes(report) == {three["h"]["junk"], three["h"]["only3"], three["h"]["tree"]}


@pytest.mark.parametrize(
    "bad", [b"this is [not toml\n", b"lock-version = \n", b"\xff\xfe\x00garbage"]
)
def test_unreadable_root_stops_gc_exit_3_naming_it_and_deletes_nothing(
    three: dict[str, Any], store: Path, bad: bytes
) -> None:
    p2 = three["p2"]
    p2.lockfile.write_bytes(bad)
    before = snapshot(store)
    for args in (
        ("--grace", "0s"),
        ("--grace", "0s", "--dry-run"),
        ("--grace", "0s", "--allow-missing"),
    ):
        r = three["p1"].gc(*args, code=3)
        assert str(p2.lockfile) in r.stderr
    assert snapshot(store) == before  # junk (unreferenced) survives too: fail closed
    assert three["h"]["junk"] in present(store)


def test_unreadable_root_through_the_real_executable(
    three: dict[str, Any], store: Path, vvstore_cmd: list[str]
) -> None:
    three["p3"].lockfile.write_text("[[models]\nname = 1\n")
    before = present(store)
    env = {**os.environ, "VVSTORE_HOME": str(store)}
    env.pop("VVSTORE_FAILPOINTS", None)
    proc = subprocess.run(
        [*vvstore_cmd, "gc", "--grace", "0s"],
        cwd=three["p1"].path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert str(three["p3"].lockfile) in proc.stderr and "Traceback" not in proc.stderr
    assert present(store) == before


def test_missing_referenced_blob_exit_4_unless_allow_missing(
    three: dict[str, Any], store: Path
) -> None:
    h, p1 = three["h"], three["p1"]
    blob(store, h["only2"]).unlink()  # p2 references it
    before = snapshot(store)
    r = p1.gc("--grace", "0s", code=4)
    assert h["only2"][:12] in r.stderr
    assert snapshot(store) == before  # junk not collected either
    r = p1.gc("--grace", "0s", "--dry-run", code=4)
    report = p1.gc_json("--grace", "0s", "--allow-missing")
    assert report["missing"] == ["blake3:" + h["only2"]]
    assert deleted_hexes(report) == {h["junk"]}
    assert present(store) == {h["shared"], h["only1"], h["only3"], h["tree"]}


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_explains_every_victim(
    three: dict[str, Any], store: Path, tmp_path: Path
) -> None:
    import shutil

    h, p1 = three["h"], three["p1"]
    p1.vv("rm", "only1")
    age(store, h["only1"], 40)
    age(store, h["junk"], 3)
    (store / "tmp" / "old-partial.part").write_bytes(b"x" * 10)
    old = time.time() - 3 * DAY
    os.utime(store / "tmp" / "old-partial.part", (old, old))
    p1.vv("pin", "blake3:" + h["junk"])
    p1.vv("unpin", "blake3:" + h["junk"])
    shutil.rmtree(three["p2"].path)  # a stale root: a dry run must not drop it either
    before = snapshot(store)
    for args in (
        (),
        ("--grace", "0s"),
        ("--ttl", "30d"),
        ("--max-size", "1B", "--grace", "1h"),
        ("--ttl", "1d", "--max-size", "1GB", "--grace", "0s"),
    ):
        r = p1.gc("--dry-run", *args)
        assert snapshot(store) == before, args
        assert "deleted" not in r.stdout
        for line in r.stdout.splitlines():
            assert line.startswith("would delete ")
            assert HEX12.search(line) and ": unreferenced" in line
        report = p1.gc_json("--dry-run", *args)
        assert snapshot(store) == before, args
        assert report["dry_run"] is True and report["deleted"] == [] and report["freed_bytes"] == 0
        assert report["tmp_cleaned"] == 0
        shown = [HEX12.search(line).group(0) for line in r.stdout.splitlines()]
        planned = [v["digest"] for v in report["plan"]["delete"]]
        assert len(shown) == len(planned) and all(
            p.startswith(s) for s, p in zip(shown, planned, strict=True)
        )
    # what each would have done, named with its reason
    grace0 = p1.gc_json("--dry-run", "--grace", "0s")
    assert planned_hexes(grace0) == {h["only1"], h["junk"], h["only2"]}  # only2: p2's root is stale
    ttl = p1.gc_json("--dry-run", "--ttl", "30d")
    [victim] = ttl["plan"]["delete"]
    assert victim["digest"] == "blake3:" + h["only1"] and victim["rule"] == "ttl"
    assert victim["reason"].startswith("unreferenced, unused for 40 days > ttl 30d")
    assert victim["owner"] == "only1@1"  # the model it last belonged to, from the audit log
    r = p1.gc("--dry-run", "--ttl", "30d")
    assert r.stdout.strip() == (
        f"would delete blake3:{h['only1'][:12]} (1 KB, only1@1): "
        "unreferenced, unused for 40 days > ttl 30d"
    )
    assert snapshot(store) == before


def test_dry_run_json_shape(three: dict[str, Any], store: Path) -> None:
    h = three["h"]
    report = three["p1"].gc_json("--dry-run", "--grace", "0s", "--max-size", "20KB")
    assert set(report) == {
        "dry_run",
        "plan",
        "deleted",
        "kept_in_use",
        "freed_bytes",
        "missing",
        "dropped_roots",
        "tmp_cleaned",
    }
    plan = report["plan"]
    assert set(plan) == {
        "policy",
        "delete",
        "total_bytes",
        "referenced_bytes",
        "pinned_bytes",
        "grace_bytes",
        "keep_bytes",
        "delete_bytes",
        "over_cap_by",
    }
    assert plan["policy"] == {"max_size": 20_000, "ttl": None, "grace": 0.0, "keep_pinned": True}
    sizes = {"shared": 4000, "only1": 1000, "junk": 700, "only2": 2000, "only3": 3000}
    tree_size = blob(store, h["tree"]).stat().st_size
    assert plan["total_bytes"] == sum(sizes.values()) + tree_size
    assert plan["referenced_bytes"] == plan["total_bytes"] - 700
    assert plan["delete_bytes"] == 0 and plan["delete"] == []  # under the cap: nothing to evict
    report = three["p1"].gc_json("--dry-run", "--grace", "0s", "--max-size", "10000")
    [v] = report["plan"]["delete"]
    assert set(v) == {"digest", "size", "mtime", "rule", "reason", "owner"}
    assert v == {
        "digest": "blake3:" + h["junk"],
        "size": 700,
        "mtime": blob(store, h["junk"]).stat().st_mtime,
        "rule": "lru",
        "reason": "unreferenced, LRU eviction to reach 10 KB",
        "owner": "junk@1",
    }
    assert report["plan"]["keep_bytes"] == report["plan"]["total_bytes"] - 700
    assert (
        report["plan"]["over_cap_by"] == tree_size
    )  # referenced alone is 10000 + the tree document


# --- TTL and LRU ----------------------------------------------------------------------------


@pytest.fixture
def aged(tmp_path: Path, store: Path) -> dict[str, Any]:
    """One project; `keep` referenced (and very old); m40, m31, m29, m2 removed and aged so."""
    p = Project(tmp_path / "aged")
    h = {"keep": p.add("keep.bin", payload("keep", 1000))}
    for name, days in (("m40", 40), ("m31", 31), ("m29", 29), ("m2", 2)):
        h[name] = p.add(f"{name}.bin", payload(name, 1000))
        p.vv("rm", name)
        age(store, h[name], days)
    age(store, h["keep"], 100)
    return {"p": p, "h": h}


def test_ttl_deletes_exactly_the_blobs_older_than_it(aged: dict[str, Any], store: Path) -> None:
    p, h = aged["p"], aged["h"]
    r = p.gc("--ttl", "30d")
    assert present(store) == {h["keep"], h["m29"], h["m2"]}
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    for name, days in (("m40", 40), ("m31", 31)):
        [line] = [x for x in lines if h[name][:12] in x]
        assert line.startswith(f"deleted blake3:{h[name][:12]}")
        assert f"{name}@1" in line  # the model it last belonged to
        assert f"unused for {days} days > ttl 30d" in line
    assert "freed 2 KB" in r.stderr
    # one audit line per deletion, with its reason and owner
    logged = run_json("-C", str(p.path), "log")
    gc_entries = [e for e in logged if e["action"] == "gc"]
    assert {e["digest"] for e in gc_entries} == {"blake3:" + h["m40"], "blake3:" + h["m31"]}
    for e in gc_entries:
        name = "m40" if e["digest"].endswith(h["m40"]) else "m31"
        assert e["ref"] == f"{name}@1" and e["size"] == "1000" and e["outcome"] == "ok"
        assert e["reason"].startswith("unreferenced, unused for") and e["reason"].endswith(
            "> ttl 30d"
        )
    # a second run finds nothing more
    assert p.gc_json("--ttl", "30d")["deleted"] == []


def test_lru_deletes_least_recently_used_until_under_the_cap(
    aged: dict[str, Any], store: Path
) -> None:
    p, h = aged["p"], aged["h"]
    # 5000 bytes in all; 1000 referenced (the oldest of all, never evicted); cap 2500
    report = p.gc_json("--max-size", "2.5KB", "--grace", "0s")
    assert [v["digest"] for v in report["deleted"]] == [
        "blake3:" + h[n] for n in ("m40", "m31", "m29")
    ]
    assert all(
        v["rule"] == "lru" and v["reason"] == "unreferenced, LRU eviction to reach 2.5 KB"
        for v in report["deleted"]
    )
    assert present(store) == {h["keep"], h["m2"]}
    assert report["plan"]["keep_bytes"] == 2000 <= 2500 and report["freed_bytes"] == 3000
    logged = [e for e in run_json("-C", str(p.path), "log") if e["action"] == "gc"]
    assert [e["digest"] for e in logged] == ["blake3:" + h[n] for n in ("m40", "m31", "m29")]
    assert [e["ref"] for e in logged] == ["m40@1", "m31@1", "m29@1"]
    assert all(e["reason"] == "unreferenced, LRU eviction to reach 2.5 KB" for e in logged)


def test_lru_respects_grace_and_says_when_referenced_data_exceeds_the_cap(
    aged: dict[str, Any], store: Path
) -> None:
    p, h = aged["p"], aged["h"]
    r = p.gc("--max-size", "500", "--grace", "3d")  # m2 is within the grace period
    assert present(store) == {h["keep"], h["m2"]}
    assert "still 1.5 KB over the 500 B cap" in r.stderr  # referenced 1000 + in-grace 1000
    report = p.gc_json("--max-size", "500", "--grace", "3d")
    assert report["plan"]["over_cap_by"] == 1500 and report["deleted"] == []


def test_ttl_and_lru_together(aged: dict[str, Any], store: Path) -> None:
    p, h = aged["p"], aged["h"]
    report = p.gc_json("--ttl", "35d", "--max-size", "3KB", "--grace", "1d")
    assert [(v["digest"], v["rule"]) for v in report["deleted"]] == [
        ("blake3:" + h["m40"], "ttl"),
        ("blake3:" + h["m31"], "lru"),
    ]
    # 5000 - 1000 (ttl) = 4000 > 3000: one LRU victim more reaches 3000
    assert present(store) == {h["keep"], h["m29"], h["m2"]}


def test_freshened_blob_is_young_again(aged: dict[str, Any], store: Path) -> None:
    """Re-adding (or reading) a blob freshens its mtime, so TTL no longer takes it."""
    p, h = aged["p"], aged["h"]
    p.add("m40.bin", payload("m40", 1000))
    p.vv("rm", "m40")
    p.gc("--ttl", "30d")
    assert present(store) == {h["keep"], h["m40"], h["m29"], h["m2"]}


# --- manifest policy defaults ---------------------------------------------------------------


def set_policy(p: Project, text: str) -> None:
    manifest = p.path / "vvstore.yaml"
    manifest.write_text(manifest.read_text() + text)


def test_manifest_policy_gives_the_defaults(aged: dict[str, Any], store: Path) -> None:
    p, h = aged["p"], aged["h"]
    set_policy(p, "policy:\n  ttl: 30d\n  grace: 3d\n")
    report = p.gc_json()
    assert (
        report["plan"]["policy"]["ttl"] == 30 * DAY and report["plan"]["policy"]["grace"] == 3 * DAY
    )
    assert deleted_hexes(report) == {h["m40"], h["m31"]}
    report = p.gc_json("--ttl", "1d")  # a flag overrides; the manifest's grace still holds
    assert deleted_hexes(report) == {h["m29"]}
    assert present(store) == {h["keep"], h["m2"]}
    # --grace 0s overrides only the grace: the manifest's ttl 30d still spares 2-day-old m2
    assert p.gc_json("--grace", "0s")["deleted"] == []
    assert present(store) == {h["keep"], h["m2"]}


def test_manifest_policy_grace_overridden_keeps_ttl(aged: dict[str, Any], store: Path) -> None:
    p, h = aged["p"], aged["h"]
    set_policy(p, "policy:\n  ttl: 30d\n  grace: 3d\n")
    report = p.gc_json("--grace", "0s")
    assert report["plan"]["policy"]["ttl"] == 30 * DAY and report["plan"]["policy"]["grace"] == 0.0
    assert deleted_hexes(report) == {h["m40"], h["m31"]}
    assert present(store) == {h["keep"], h["m29"], h["m2"]}


def test_manifest_policy_max_size(aged: dict[str, Any], store: Path) -> None:
    p, h = aged["p"], aged["h"]
    set_policy(p, "policy:\n  max_size: 3KB\n  grace: 1h\n")
    report = p.gc_json()
    assert report["plan"]["policy"]["max_size"] == 3000
    assert [v["digest"] for v in report["deleted"]] == ["blake3:" + h["m40"], "blake3:" + h["m31"]]
    assert present(store) == {h["keep"], h["m29"], h["m2"]}


@pytest.mark.parametrize(
    "field,value", [("ttl", "30x"), ("ttl", "30"), ("grace", "1M"), ("max_size", "50G")]
)
def test_bad_unit_in_the_manifest_exits_3_naming_the_field(
    aged: dict[str, Any], store: Path, field: str, value: str
) -> None:
    p = aged["p"]
    set_policy(p, f"policy:\n  {field}: {value}\n")
    before = snapshot(store)
    r = p.gc("--grace", "0s", code=3)
    assert f"$.policy.{field}" in r.stderr and str(p.path / "vvstore.yaml") in r.stderr
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "args",
    [
        ("--ttl", "30"),
        ("--ttl", "30x"),
        ("--ttl", "-1d"),
        ("--grace", "1M"),
        ("--grace", ""),
        ("--max-size", "50G"),
        ("--max-size", "-5"),
        ("--max-size", "1.5"),
        ("--max-size", "lots"),
    ],
)
def test_bad_unit_on_the_command_line_exits_2(
    aged: dict[str, Any], store: Path, args: tuple[str, ...]
) -> None:
    before = snapshot(store)
    r = aged["p"].gc(*args, code=2)
    assert "invalid" in r.stderr and repr(args[1]) in r.stderr
    assert snapshot(store) == before


# --- pin and unpin --------------------------------------------------------------------------


def test_pin_a_model_ref_keeps_its_blobs_until_unpinned(tmp_path: Path, store: Path) -> None:
    p = Project(tmp_path / "pp")
    tree, files = p.add_tree("net", {"config.json": b"{}", "w.bin": payload("w", 5000)})
    other = p.add("other.bin", payload("other", 100))
    doc = p.vj("pin", "net")
    assert doc["ref"] == "net" and set(doc["pinned"]) == {"blake3:" + x for x in (tree, *files)}
    assert p.vj("pin", "net")["pinned"] == []  # already pinned
    p.vv("rm", "net")
    p.vv("rm", "other")
    report = p.gc_json("--grace", "0s")
    assert deleted_hexes(report) == {other}
    assert present(store) == {tree, *files}
    usage = p.vj("du")
    assert usage["pinned_bytes"] == sum(blob(store, x).stat().st_size for x in (tree, *files))
    assert usage["referenced_bytes"] == 0
    # unpin names what was pinned, even though the model has left the manifest
    doc = p.vj("unpin", "net")
    assert set(doc["unpinned"]) == {"blake3:" + x for x in (tree, *files)}
    assert list((store / "pins").iterdir()) == []
    report = p.gc_json("--grace", "0s")
    assert deleted_hexes(report) == {tree, *files}
    assert present(store) == set()


def test_pin_a_model_ref_while_it_is_in_the_project(tmp_path: Path, store: Path) -> None:
    """The same cycle, unpinning before `rm` (which needs no pin label lookup)."""
    p = Project(tmp_path / "pp")
    h = p.add("m.bin", payload("m", 3000))
    r = p.vv("pin", "m@1")
    assert "pinned m@1: 1 new blob pin" in r.stderr
    assert (store / "pins" / h).read_text().strip() == "m@1"
    assert p.vj("unpin", "m@1")["unpinned"] == ["blake3:" + h]
    p.vv("pin", "m@1")
    p.vv("rm", "m")
    assert p.gc_json("--grace", "0s")["deleted"] == []
    assert present(store) == {h}
    actions = [(e["action"], e.get("digest"), e.get("ref")) for e in audit(store)]
    assert ("pin", "blake3:" + h, "m@1") in actions and ("unpin", "blake3:" + h, None) in actions


def test_pin_a_bare_digest(tmp_path: Path, store: Path, outside: Path) -> None:
    p = Project(tmp_path / "pd")
    h = p.add("d.bin", payload("d", 1234))
    p.vv("rm", "d")
    doc = run_json("pin", "blake3:" + h)  # a digest needs no project
    assert doc == {"ref": "blake3:" + h, "pinned": ["blake3:" + h]}
    report = run_json("gc", "--grace", "0s", "--ttl", "0s", "--max-size", "0")
    assert report["deleted"] == [] and report["plan"]["pinned_bytes"] == 1234
    assert present(store) == {h}
    r = run("unpin", "blake3:" + h)
    assert "unpinned blake3:" + h in r.stderr
    assert run_json("unpin", "blake3:" + h)["unpinned"] == []  # already unpinned
    assert deleted_hexes(run_json("gc", "--grace", "0s")) == {h}
    assert present(store) == set()


def test_pin_rejects_a_bad_digest_and_an_unknown_model(tmp_path: Path, store: Path) -> None:
    p = Project(tmp_path / "pr")
    p.vv("pin", "blake3:xyz", code=2)
    p.vv("pin", "nosuch", code=4)
    assert list((store / "pins").iterdir()) == []


# --- du -------------------------------------------------------------------------------------


def test_du_bytes_by_model_and_by_kind(tmp_path: Path, store: Path) -> None:
    p1, p2 = Project(tmp_path / "d1"), Project(tmp_path / "d2")
    shared = p1.add("a.bin", payload("S", 1000))
    b = p1.add("b.bin", payload("B", 2000))
    assert p2.add("s.bin", payload("S", 1000)) == shared
    c = p2.add("c.bin", payload("C", 3000))
    g = p2.add("g.bin", payload("G", 500))
    u = p2.add("u.bin", payload("U", 700))
    p2.vv("rm", "g")
    p2.vv("rm", "u")
    p2.vv("pin", "blake3:" + g)
    (store / "tmp" / "partial.download").write_bytes(b"p" * 123)
    usage = p1.vj("du")
    assert usage["store"] == str(store)
    assert usage["blobs"] == 5 and present(store) == {shared, b, c, g, u}
    assert usage["total_bytes"] == 7200
    assert usage["referenced_bytes"] == 6000
    assert usage["pinned_bytes"] == 500
    assert usage["unreferenced_bytes"] == 700
    assert usage["dedup_saved_bytes"] == 1000  # `shared` is held by two projects, stored once
    assert usage["partial_bytes"] == 123
    models = {(m["ref"], m["project"]): (m["bytes"], m["present"]) for m in usage["models"]}
    assert models == {
        ("a@1", str(p1.path)): (1000, True),
        ("b@1", str(p1.path)): (2000, True),
        ("s@1", str(p2.path)): (1000, True),
        ("c@1", str(p2.path)): (3000, True),
    }
    text = p2.vv("du").stdout
    assert text.splitlines()[0].split() == ["MODEL", "SIZE", "PRESENT", "PROJECT"]
    for line in (
        "referenced: 6 KB",
        "unreferenced: 700 B",
        "pinned: 500 B",
        "dedup saved: 1 KB",
        "partial: 123 B",
    ):
        assert line in text
    assert f"store {store}: 5 blobs, 7.2 KB" in text
    # a missing blob shows as not present
    blob(store, c).unlink()
    models = {m["ref"]: m["present"] for m in p1.vj("du")["models"]}
    assert models == {"a@1": True, "b@1": True, "s@1": True, "c@1": False}


def test_du_changes_nothing(three: dict[str, Any], store: Path) -> None:
    (store / "tmp" / "partial").write_bytes(b"x")
    three["p1"].vv("du")  # the gc lock is not taken, but let the listing settle
    before = snapshot(store)
    three["p1"].vv("du")
    three["p2"].vj("du")
    assert snapshot(store) == before


# --- stale temp files -----------------------------------------------------------------------


def test_gc_cleans_stale_tmp_files_and_keeps_fresh_ones(three: dict[str, Any], store: Path) -> None:
    tmp = store / "tmp"
    stale, fresh, day_old = tmp / "stale.part", tmp / "fresh.part", tmp / "almost.part"
    for f in (stale, fresh, day_old):
        f.write_bytes(b"partial")
    t = time.time()
    os.utime(stale, (t - 2 * DAY, t - 2 * DAY))
    os.utime(day_old, (t - DAY + 3600, t - DAY + 3600))  # 23 hours: not yet stale
    three["p1"].gc("--dry-run")
    assert stale.exists()
    report = three["p1"].gc_json()  # default grace: no blob goes, but stale debris does
    assert report["tmp_cleaned"] == 1 and report["deleted"] == []
    assert not stale.exists() and fresh.exists() and day_old.exists()
    r = three["p1"].gc()
    assert "stale temp" not in r.stderr  # nothing more to clean
