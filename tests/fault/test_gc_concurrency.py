"""gc on a store that other processes are using at the same time.

The stress test: three worker processes, each with its own project on one shared store, keep
adding files (new random ones, bytes shared between the workers, small directories as trees,
and files they added before), reading them back (`DefaultModelManager.path`/`open`, which
freshen, and now and then the real `vvstore cat`) and removing models, while a fourth process
runs gc in a loop (in-process, and now and then the real `vvstore gc`) with a grace period of
one second, for a bounded time. At the end every blob a worker's lockfile references is present
and hashes to its name, no process saw an unexpected error, and a final gc finds nothing missing.

Why a grace of 1 s and not 0: `add` publishes a blob before the lockfile that references it
is written, so between the two the blob is unreferenced. DESIGN.md closes that window with the
grace period ("gc deletes only unreferenced blobs older than a grace period", and
cas/policy.py: "a blob that a concurrent add or fetch just published survives until its
lockfile is written"); with grace 0 gc may legitimately collect a just-published blob before
its lockfile lists it. One second is far longer than one small `add` takes here. Everything
else (a blob freshened, re-added or opened while gc plans and sweeps it) must hold without the
grace period: gc's sweep re-checks each victim's mtime after moving it out of `blobs/`.

Following DESIGN.md ("a process whose freshen finds the blob gone fetches it again"), a worker
whose read finds a blob gone (possible only for the instant gc holds a freshened victim before
putting it back) fetches it again from its source and reads again; those events are counted,
not failures. Any other exception in any process fails the test.

The deterministic tests below pin particular interleavings of gc with a project's first
registration, which the stress test can only hit by luck.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from cas.atomic import unique_suffix
from cas.blobs import BlobStore
from cas.cache import ModelCacheManager
from cas.digest import Digest
from cas.lockfile import Lockfile
from cas.manager import DefaultModelManager
from cas.policy import CachePolicy

pytestmark = pytest.mark.timeout(120)

WORKERS = 3
RUN_SECONDS = 8.0  # the concurrent phase; the whole test stays well under 30 s
MAX_OPS = 600  # per worker, whatever the machine's speed
REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import json, os, random, subprocess, sys, time, traceback
from collections import Counter
from pathlib import Path

from cas.digest import Digest
from cas.errors import BlobNotFoundError
from cas.lockfile import Lockfile
from cas.manager import DefaultModelManager

store, project, wid, start, deadline, max_ops, out, vvstore = sys.argv[1:9]
wid, start, deadline, max_ops = int(wid), float(start), float(deadline), int(max_ops)
project = Path(project)
rng = random.Random(1000 + wid)
SHARED = [random.Random(s).randbytes(random.Random(s).randint(1, 3000)) for s in range(6)]
m = DefaultModelManager(project, store)
known = {}     # model name -> {relpath: bytes} (a file model has one item, relpath None)
removed = {}   # removed models, to add again later
counts = Counter()
errors = []


def content():
    if rng.random() < 0.3:
        return rng.choice(SHARED)  # the same bytes in several workers' projects
    return os.urandom(rng.randint(0, 4096))


def write_model(name, files):
    if None in files:
        p = project / "src" / f"{name}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[None])
        return p
    d = project / "src" / name
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def add(name, files):
    src = write_model(name, files)
    m.add([str(src)], name=name)
    known[name] = files
    removed.pop(name, None)


def read_back(name, files, use_cli):
    for rel, data in files.items():
        ref = name if rel is None else f"{name}/{rel}"
        for attempt in range(3):
            try:
                if use_cli:
                    argv = [*json.loads(vvstore), "--store", store, "-C", str(project), "cat", ref]
                    proc = subprocess.run(argv, capture_output=True, timeout=60)
                    if proc.returncode == 4 and attempt < 2:
                        raise BlobNotFoundError(ref)
                    assert proc.returncode == 0, (ref, proc.returncode, proc.stderr[-2000:])
                    assert b"Traceback" not in proc.stderr
                    got = proc.stdout
                elif rng.random() < 0.5:
                    got = m.path(ref).read_bytes()
                else:
                    with m.open(ref) as f:
                        got = f.read()
            except BlobNotFoundError:
                if attempt == 2:
                    raise
                # DESIGN.md: a process that finds its blob gone fetches it again
                counts["refetch"] += 1
                m.fetch([name])
                continue
            assert got == data, f"{ref}: wrong bytes"
            break


FIRST = ["new", "tree", "new", "read", "rm", "again", "read", "readd", "cat", "new", "rm"]
time.sleep(max(0.0, start - time.time()))
i = 0
while time.time() < deadline and i < max_ops:
    i += 1
    op = rng.choices(["new", "tree", "again", "readd", "read", "cat", "rm"],
                     [30, 8, 12, 12, 30, 2, 14])[0]
    if i <= len(FIRST):  # every kind of operation happens, however slow the machine
        op = FIRST[i - 1]
    if op in ("again", "read", "cat", "rm") and not known:
        op = "new"
    if op == "readd" and not removed:
        op = "new"
    try:
        if op == "new":
            add(f"w{wid}-f{i}", {None: content()})
        elif op == "tree":
            add(f"w{wid}-t{i}", {f"part{k}.bin": content() for k in range(rng.randint(1, 3))})
        elif op == "again":  # the same file added again: its blob is freshened, not rewritten
            name = rng.choice(sorted(known))
            add(name, known[name])
        elif op == "readd":  # bytes gc may be collecting right now
            name = rng.choice(sorted(removed))
            add(name, removed[name])
        elif op in ("read", "cat"):
            name = rng.choice(sorted(known))
            read_back(name, known[name], op == "cat")
        elif op == "rm":
            name = rng.choice(sorted(known))
            m.remove(name)
            removed[name] = known.pop(name)
        counts[op] += 1
    except Exception:
        errors.append(f"op {i} {op}: {traceback.format_exc()}")

# What this worker believes present and referenced now: its lockfile's digests.
lock = Lockfile.load(m.lockfile_path) if m.lockfile_path.exists() else Lockfile()
locked = sorted({Digest.parse(x).hex for mod in lock.models
                 for x in (mod.digest, *(f.digest for f in mod.files))})
expected = {}
for name, files in known.items():
    for rel, data in files.items():
        expected[name if rel is None else f"{name}/{rel}"] = data.hex()
try:
    for name, files in known.items():  # and it still reads every model it kept
        read_back(name, files, False)
except Exception:
    errors.append("final read: " + traceback.format_exc())
Path(out).write_text(json.dumps({"locked": locked, "expected": expected, "errors": errors,
                                 "counts": counts, "models": sorted(known)}))
"""

GC = r"""
import json, random, subprocess, sys, time, traceback
from pathlib import Path

from cas.blobs import BlobStore
from cas.cache import ModelCacheManager
from cas.policy import CachePolicy

store, start, deadline, out, vvstore, cwd = sys.argv[1:7]
start, deadline = float(start), float(deadline)
rng = random.Random(7)
cache = ModelCacheManager(BlobStore(store))
policies = [CachePolicy(grace=1.0), CachePolicy(grace=1.0, max_size=0),
            CachePolicy(grace=1.0, ttl=0.0), CachePolicy(grace=1.0, max_size=20_000, ttl=3.0)]
runs = cli_runs = deleted = kept = tmp_cleaned = 0
errors = []
time.sleep(max(0.0, start - time.time()))
while time.time() < deadline:
    try:
        if runs % 6 == 5:  # the real command now and then
            argv = [*json.loads(vvstore), "--store", store, "--json", "gc", "--grace", "1s"]
            proc = subprocess.run(argv, capture_output=True, timeout=60, cwd=cwd)
            assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
            doc = json.loads(proc.stdout)
            deleted += len(doc["deleted"])
            kept += len(doc["kept_in_use"])
            cli_runs += 1
        else:
            report = cache.enforce_cache_policy(rng.choice(policies))
            deleted += len(report.deleted)
            kept += len(report.kept_in_use)
            tmp_cleaned += report.tmp_cleaned
    except Exception:
        errors.append(traceback.format_exc())
    runs += 1
    time.sleep(rng.random() * 0.02)
Path(out).write_text(json.dumps({"runs": runs, "cli_runs": cli_runs, "deleted": deleted,
                                 "kept_in_use": kept, "errors": errors}))
"""


def hexof_file(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def present(store: Path) -> dict[str, Path]:
    return {
        p.parent.name + p.name: p for p in (store / "blobs" / "blake3").glob("*/*") if p.is_file()
    }


@pytest.mark.slow
def test_gc_in_a_loop_never_loses_a_referenced_blob(
    tmp_path: Path, vv_home: Path, vvstore_cmd: list[str]
) -> None:
    store = vv_home
    BlobStore(store)
    projects = [tmp_path / f"w{k}" for k in range(WORKERS)]
    for p in projects:
        DefaultModelManager(p, store).init()  # registered; no lockfile until the first add
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "VVSTORE_FAILPOINTS"}
    env["VVSTORE_HOME"] = str(store)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.time() + 2.0  # every process imported and waiting
    deadline = start + RUN_SECONDS
    cmd = json.dumps(vvstore_cmd)
    outs = [tmp_path / f"worker{k}.json" for k in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(store),
                str(p),
                str(k),
                str(start),
                str(deadline),
                str(MAX_OPS),
                str(out),
                cmd,
            ],
            env=env,
            cwd=outside,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k, (p, out) in enumerate(zip(projects, outs, strict=True))
    ]
    gc_out = tmp_path / "gc.json"
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                GC,
                str(store),
                str(start),
                str(deadline),
                str(gc_out),
                cmd,
                str(outside),
            ],
            env=env,
            cwd=outside,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    )
    try:
        finished = [proc.communicate(timeout=90) for proc in procs]
    finally:
        for proc in procs:  # a hung process must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, finished, strict=True):
        assert proc.returncode == 0, err.decode(errors="replace")[-4000:]

    gc_doc = json.loads(gc_out.read_text())
    docs = [json.loads(o.read_text()) for o in outs]
    assert gc_doc["errors"] == [], "\n".join(gc_doc["errors"][:3])
    for k, doc in enumerate(docs):
        assert doc["errors"] == [], f"worker {k}:\n" + "\n".join(doc["errors"][:3])

    # Everything each worker believes present and referenced is present and verifies.
    blobs = present(store)
    for k, doc in enumerate(docs):
        lock = Lockfile.load(projects[k] / "vvstore.lock")
        assert doc["locked"] == sorted(
            {
                Digest.parse(x).hex
                for m in lock.models
                for x in (m.digest, *(f.digest for f in m.files))
            }
        )
        assert sorted(m.name for m in lock.models) == doc["models"]
        for h in doc["locked"]:
            assert h in blobs, f"worker {k}: referenced blob {h} is gone"
            assert hexof_file(blobs[h]) == h
            assert stat.S_IMODE(os.lstat(blobs[h]).st_mode) == 0o444
        for ref, data_hex in doc["expected"].items():
            h = blake3.blake3(bytes.fromhex(data_hex)).hexdigest()
            assert h in doc["locked"] and h in blobs, (k, ref)
    # Every blob in the store verifies; gc left no hold files behind.
    for h, path in blobs.items():
        assert hexof_file(path) == h
    assert not [p.name for p in (store / "tmp").iterdir() if p.name.startswith("gc.")]

    # The settled store: a final gc with no grace at all finds nothing missing and deletes
    # exactly the unreferenced blobs.
    referenced = {h for doc in docs for h in doc["locked"]}
    report = ModelCacheManager(BlobStore(store)).enforce_cache_policy(CachePolicy(grace=0.0))
    assert report.missing == [] and report.kept_in_use == []
    assert {v.digest.hex for v in report.deleted} == set(blobs) - referenced
    assert set(present(store)) == referenced

    # The test exercised what it claims to: many operations, and gc really deleted blobs.
    ops = [sum(v for key, v in doc["counts"].items() if key != "refetch") for doc in docs]
    print(
        f"\nworker ops {ops}, refetches {[doc['counts'].get('refetch', 0) for doc in docs]}, "
        f"gc runs {gc_doc['runs']} ({gc_doc['cli_runs']} via the CLI), "
        f"deleted {gc_doc['deleted']}, kept in use {gc_doc['kept_in_use']}"
    )
    assert all(n >= 20 for n in ops), ops
    for doc in docs:
        assert {"new", "tree", "again", "readd", "read", "cat", "rm"} <= set(doc["counts"]), doc

    assert gc_doc["runs"] >= 10 and gc_doc["cli_runs"] >= 1 and gc_doc["deleted"] >= 1, gc_doc


# --- deterministic interleavings ------------------------------------------------------------


def test_a_project_registering_while_gc_drops_its_root_stays_a_root(
    tmp_path: Path, blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc sees a root whose lockfile does not exist yet (a project just initialised) and drops
    it; in between, the project's first `add` writes the lockfile and finds its root entry
    still there, so it leaves it. The project must stay a root: otherwise its blobs are
    collected once they pass the grace period, while its lockfile references them."""
    project = tmp_path / "p"
    m = DefaultModelManager(project, blob_store)
    m.init()
    (project / "w.bin").write_bytes(b"weights" * 1000)
    lockfile = m.lockfile_path
    entry = blob_store.layout.root_entry(lockfile)
    assert entry.exists() and not lockfile.exists()
    real_exists = Path.exists
    fired: list[bool] = []

    def exists(self: Path, *args: Any, **kwargs: Any) -> bool:
        result = real_exists(self, *args, **kwargs)
        if self == lockfile and not fired:
            fired.append(True)
            m.add([str(project / "w.bin")])  # the other process, right after gc looked
        return result

    monkeypatch.setattr(Path, "exists", exists)
    cache = ModelCacheManager(blob_store)
    cache.enforce_cache_policy()  # default grace: the new blob is young either way
    monkeypatch.undo()
    assert fired and lockfile.exists()

    assert entry.exists(), "the project's root entry was dropped although its lockfile exists"
    d = Digest(blake3.blake3(b"weights" * 1000).hexdigest())
    old = time.time() - 3 * 86400
    os.utime(blob_store.path(d), (old, old))
    report = cache.enforce_cache_policy(CachePolicy(grace=0.0))
    assert report.deleted == [] and blob_store.has(d)
    assert m.path("w") == blob_store.path(d)


@pytest.mark.parametrize("content", ["empty", "complete"])
def test_gc_ignores_a_root_registration_in_flight(
    tmp_path: Path, blob_store: BlobStore, content: str
) -> None:
    """Registering a project writes its root entry atomically (temp file, then rename). gc
    running at that instant, or after a crash in between, sees the temp file in roots/; it is
    not a root and must not stop gc (nor make it read the wrong lockfile)."""
    project = tmp_path / "p"
    m = DefaultModelManager(project, blob_store)
    m.init()
    (project / "a.bin").write_bytes(b"a" * 100)
    m.add([str(project / "a.bin")])
    other = tmp_path / "other"
    other_m = DefaultModelManager(other, blob_store)
    other_m.init()
    entry = blob_store.layout.root_entry(other_m.lockfile_path)
    entry.unlink()
    # exactly the temp file atomic_write(entry, ...) creates before writing and renaming it
    fd, name = tempfile.mkstemp(
        dir=entry.parent, prefix=f".{entry.name}.{unique_suffix()}.", suffix=".tmp"
    )
    with os.fdopen(fd, "wb") as f:
        if content == "complete":
            f.write((str(other_m.lockfile_path) + "\n").encode())
    stray = blob_store.publish_bytes(b"garbage").digest
    old = time.time() - 3 * 86400
    os.utime(blob_store.path(stray), (old, old))
    report = ModelCacheManager(blob_store).enforce_cache_policy(CachePolicy(grace=0.0))
    assert [v.digest for v in report.deleted] == [stray]
    assert blob_store.has(Digest(blake3.blake3(b"a" * 100).hexdigest()))


def test_gc_and_readd_of_its_victim_race_safely(
    tmp_path: Path, blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removed model is added again while gc sweeps its blob: whichever way the race goes
    (freshened before gc moved it out of blobs/, or republished after), the blob ends present
    and correct, and the project reads it."""
    import cas.cache as cache_module

    project = tmp_path / "p"
    m = DefaultModelManager(project, blob_store)
    m.init()
    src = project / "r.bin"
    src.write_bytes(b"readd" * 500)
    m.add([str(src)])
    m.remove("r")
    d = Digest(blake3.blake3(b"readd" * 500).hexdigest())
    old = time.time() - 3 * 86400
    os.utime(blob_store.path(d), (old, old))

    real_rename = os.rename
    done: list[bool] = []

    def rename(a: Any, b: Any, *args: Any, **kwargs: Any) -> None:
        if Path(a) == blob_store.path(d) and not done:  # gc's sweep moving the victim out
            done.append(True)
            real_rename(a, b, *args, **kwargs)
            m.add([str(src)])  # the blob is missing right now: add publishes it again
            return
        real_rename(a, b, *args, **kwargs)

    monkeypatch.setattr(cache_module.os, "rename", rename)
    ModelCacheManager(blob_store).enforce_cache_policy(CachePolicy(grace=0.0))
    monkeypatch.undo()
    assert done
    assert blob_store.has(d) and hexof_file(blob_store.path(d)) == d.hex
    assert m.path("r").read_bytes() == b"readd" * 500
    assert not [p for p in blob_store.layout.tmp.iterdir() if p.name.startswith("gc.")]
    # and a later gc keeps it: the lockfile references it again
    assert ModelCacheManager(blob_store).enforce_cache_policy(CachePolicy(grace=0.0)).deleted == []
    assert blob_store.has(d)
