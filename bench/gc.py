"""gc: `vvstore gc` and `vvstore du` on a store of 100,000 small blobs, beside `dvc gc`.

The store holds N small blobs (100,000 unless `--size`, which for this benchmark is the blob
*count*, e.g. `--size gc=20000`), written straight into the layout
(`blobs/blake3/xx/yyyy`, 0444, digests computed with BLAKE3) with mtimes two days old. 20
registered projects each lock 5 tree models; together they reference half of the blobs (the
tree documents included), the other half is unreferenced. The store's audit log holds what a
store built by `vvstore add` would: one `publish` line per blob and one `add` line per model
(gc reads it to name the owners of victims).

DVC gets the comparable setup: one shared cache (`dvc cache dir`) holding the same N objects
(md5-named, the 100 tree models as `.dir` objects), 20 DVC repositories each tracking its 5
directories by `.dvc` files, and `dvc gc -w -f -p <the other 19>` run in the first one, which
is how DVC keeps what several projects sharing one cache use.

Timed: `vvstore du`, `vvstore gc --dry-run --grace 0` (planning: mark, scan, plan, print),
`dvc gc -w --dry`, `vvstore gc --grace 0` and `dvc gc -w` (both delete the unreferenced half;
the victims are written back, untimed, before every command that needs them). A second table
times the phases in-process, `cas.policy.plan_gc` over the N stats among them (target < 2 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import (
    INSTALL_HINTS,
    BenchArgs,
    Case,
    CommandFailed,
    FnCase,
    ReportGroup,
    Row,
    TableReport,
    env_with,
    find_tool,
    git_state,
    machine_info,
    run_interleaved,
    run_interleaved_fn,
    run_quiet,
    scratch_dir,
    tool_version,
)

SUMMARY = ("gc and du over 100,000 small blobs and 20 projects vs dvc gc on a shared cache; "
           "plan_gc in-process (target < 2 s)")
DEFAULT_SIZE = 100_000  # blobs (a count, not bytes)
PROJECTS = 20
MODELS = 5  # tree models per project
MIN_BLOB, MAX_BLOB = 256, 4096
AGE = 2 * 86400.0  # blob mtimes: older than the default grace period
PLAN_TARGET_S = 2.0

DU = "vvstore du"
DRY = "vvstore gc --dry-run"
SWEEP = "vvstore gc"
DVC_DRY = "dvc gc --dry"
DVC_GC = "dvc gc"


@dataclass
class _Data:
    contents: list[bytes]
    b3: list[str]  # blake3 hex of each content
    referenced: list[int]  # indexes of referenced file blobs (trees come on top)
    unreferenced: list[int]


def _make_data(n: int) -> _Data:
    import blake3

    trees = PROJECTS * MODELS
    ref_files = n // 2 - trees  # the tree documents make up the rest of the referenced half
    if ref_files < trees:
        raise SystemExit(f"gc: --size must be at least {4 * trees} blobs")
    files = n - trees  # file blobs; with the tree documents the store holds n blobs
    rnd = random.Random(20261204)
    contents = [rnd.randbytes(rnd.randint(MIN_BLOB, MAX_BLOB)) for _ in range(files)]
    b3 = [blake3.blake3(c).hexdigest() for c in contents]
    if len(set(b3)) != files:
        raise AssertionError("duplicate random blobs")
    idx = list(range(files))
    return _Data(contents, b3, idx[:ref_files], idx[ref_files:])


def _split(items: list[int], parts: int) -> list[list[int]]:
    k, r = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + k + (1 if i < r else 0)
        out.append(items[start:end])
        start = end
    return out


def _write(path: Path, data: bytes, mtime: float | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


# --- the vvstore side ------------------------------------------------------------------------


def _audit_line(action: str, now: str, **fields: str) -> str:
    entry = {"time": now, "user": "bench", "host": socket.gethostname(), "action": action,
             **fields, "outcome": "ok"}
    return json.dumps(entry) + "\n"


def _build_vvstore(d: Path, data: _Data, args: BenchArgs) -> tuple[Path, list[Path], int]:
    """The store, with projects registered; returns (store, victim paths, referenced count)."""
    from cas.blobs import BlobStore
    from cas.digest import hash_bytes
    from cas.lockfile import Hashes, LockedFile, LockedModel, Lockfile
    from cas.manifest import Manifest, ModelEntry, ModelManifest
    from cas.tree import Tree, TreeEntry

    store = BlobStore(d / "store")
    lay = store.layout
    for i in range(256):
        (lay.blobs / f"{i:02x}").mkdir(exist_ok=True)
    old = time.time() - AGE
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(old))
    audit: list[str] = []
    args.log(f"writing {len(data.contents):,} blobs into a vvstore store")
    for c, h in zip(data.contents, data.b3, strict=True):
        _write(lay.blobs / h[:2] / h[2:], c, old)
        audit.append(_audit_line("publish", stamp, digest=f"blake3:{h}", size=str(len(c))))
    referenced = len(data.referenced)
    for p, chunk in enumerate(_split(data.referenced, PROJECTS)):
        project = d / "projects" / f"p{p:02d}"
        project.mkdir(parents=True)
        entries, locked = [], []
        for m, files in enumerate(_split(chunk, MODELS)):
            lfiles = [LockedFile(f"weights/part-{i:05d}.bin", len(data.contents[i]),
                                 Hashes(blake3=data.b3[i])) for i in files]
            tree = Tree.from_entries(TreeEntry(f.path, f.digest, f.size) for f in lfiles)
            doc = tree.encode()
            digest = hash_bytes(doc)
            _write(store.path(digest), doc, old)
            referenced += 1
            model = LockedModel.build(f"p{p:02d}-model{m}", "1", "tree", lfiles)
            assert model.digest == str(digest)
            locked.append(model)
            entries.append(ModelEntry(name=model.name, version="1", kind="tree",
                                      digest=model.digest, size=model.size))
            audit.append(_audit_line("add", stamp, digest=model.digest, ref=model.ref,
                                     size=str(model.size)))
        ModelManifest(project / "vvstore.yaml", Manifest(models=entries)).save()
        lockfile = project / "vvstore.lock"
        Lockfile(models=locked).save(lockfile)
        root = lay.root_entry(lockfile)
        root.write_text(f"{lockfile}\n")
    lay.audit_log.write_text("".join(audit))
    victims = [lay.blobs / data.b3[i][:2] / data.b3[i][2:] for i in data.unreferenced]
    return store.root, victims, referenced


def _count_files(top: Path) -> int:
    n = 0
    for shard in os.scandir(top):
        if shard.is_dir(follow_symlinks=False):
            n += sum(1 for _ in os.scandir(shard.path))
    return n


# --- the DVC side ----------------------------------------------------------------------------


def _build_dvc(d: Path, data: _Data, dvc: str, env: dict[str, str],
               args: BenchArgs) -> tuple[list[Path], list[Path]]:
    """A shared DVC cache with the same objects and 20 repos; returns (repos, victim paths)."""
    cache = d / "dvc-cache"
    objects = cache / "files" / "md5"
    for i in range(256):
        (objects / f"{i:02x}").mkdir(parents=True, exist_ok=True)
    md5 = [hashlib.md5(c).hexdigest() for c in data.contents]
    args.log(f"writing {len(data.contents):,} objects into a shared DVC cache")
    for c, h in zip(data.contents, md5, strict=True):
        _write(objects / h[:2] / h[2:], c)
    repos = []
    for p, chunk in enumerate(_split(data.referenced, PROJECTS)):
        repo = d / "dvc-repos" / f"p{p:02d}"
        repo.mkdir(parents=True)
        run_quiet([dvc, "init", "--no-scm", "-q"], env=env, cwd=repo)
        run_quiet([dvc, "cache", "dir", str(cache)], env=env, cwd=repo)
        for m, files in enumerate(_split(chunk, MODELS)):
            items = sorted(({"md5": md5[i], "relpath": f"weights/part-{i:05d}.bin"}
                            for i in files), key=lambda e: e["relpath"])
            doc = json.dumps(items, sort_keys=True).encode()
            h = hashlib.md5(doc).hexdigest()
            _write(objects / h[:2] / f"{h[2:]}.dir", doc)
            size = sum(len(data.contents[i]) for i in files)
            (repo / f"model{m}.dvc").write_text(
                f"outs:\n- md5: {h}.dir\n  size: {size}\n  nfiles: {len(files)}\n"
                f"  hash: md5\n  path: model{m}\n")
        repos.append(repo)
    victims = [objects / md5[i][:2] / md5[i][2:] for i in data.unreferenced]
    return repos, victims


# --- in-process phases -----------------------------------------------------------------------


def _phases(store_dir: Path, args: BenchArgs, n: int) -> TableReport:
    from cas.blobs import BlobStore
    from cas.cache import ModelCacheManager
    from cas.policy import CachePolicy, plan_gc

    store = BlobStore(store_dir)
    mgr = ModelCacheManager(store)
    stats = list(store.iter_blobs())
    marks = mgr.mark()
    total = sum(s.size for s in stats)
    now = time.time()
    plain = CachePolicy(grace=0.0)
    lru = CachePolicy(max_size=total * 3 // 4, grace=0.0)
    ttl = CachePolicy(ttl=86400.0, grace=0.0)
    owners = mgr._last_owners()

    cases = [
        FnCase("plan_gc (unreferenced)",
               lambda: plan_gc(stats, marks.referenced, marks.pinned, plain, now, owners),
               display="plan_gc(stats, referenced, pinned, CachePolicy(grace=0), now, owners)"),
        FnCase("plan_gc (ttl 1d)",
               lambda: plan_gc(stats, marks.referenced, marks.pinned, ttl, now, owners),
               display="… CachePolicy(ttl=1d, grace=0)"),
        FnCase("plan_gc (max_size, LRU)",
               lambda: plan_gc(stats, marks.referenced, marks.pinned, lru, now, owners),
               display="… CachePolicy(max_size=¾ of the store, grace=0)"),
        FnCase("scan: list(iter_blobs())", lambda: list(store.iter_blobs()),
               display="list(BlobStore.iter_blobs())"),
        FnCase("mark: read 20 lockfiles", mgr.mark, display="ModelCacheManager.mark()"),
        FnCase("owners from the audit log", mgr._last_owners,
               display="ModelCacheManager._last_owners()"),
        FnCase("enforce_cache_policy(dry_run)",
               lambda: mgr.enforce_cache_policy(plain, dry_run=True),
               display="enforce_cache_policy(CachePolicy(grace=0), dry_run=True)"),
    ]
    samples = run_interleaved_fn(cases, args.rounds, args, unit=1e3, unit_name="ms")
    rows = [Row(c.name, c.display or c.name, samples[c.name], n,
                "subject" if c.name.startswith("plan_gc") else "anchor") for c in cases]
    rep = TableReport(bench="gc", title=f"in-process phases over {n:,} blobs", rows=rows,
                      unit="ms", rate_header="blobs/s", rate_divisor=1, show_rss=False)
    plan = rep.row("plan_gc (unreferenced)")
    worst = max((r for r in rows if r.name.startswith("plan_gc")), key=lambda r: r.median)
    notes = []
    if plan:
        from .common import verdict

        notes.append(verdict(f"plan_gc over {n:,} stats, slowest policy ({worst.name})",
                             worst.median, PLAN_TARGET_S, at_most=True, unit=" s"))
    notes.append("In this process, after an untimed warm-up; `plan_gc` gets the stats, marks "
                 "and owners computed once beforehand, so its row is the planner alone; the "
                 "other rows are the I/O phases that `vvstore gc` runs before it.")
    rep.notes = notes
    return rep


# --- the benchmark ---------------------------------------------------------------------------


def run(args: BenchArgs) -> ReportGroup:
    n = int(args.size or DEFAULT_SIZE)
    vvstore = find_tool("vvstore")
    if vvstore is None:
        raise SystemExit(f"vvstore not found: {INSTALL_HINTS['vvstore']}")
    notes: list[str] = []
    load_start = os.getloadavg()[0]
    dvc = find_tool("dvc")
    with scratch_dir(args, "gc") as d:
        args.log(f"generating {n:,} small random blobs")
        data = _make_data(n)
        store, vv_victims, vv_ref = _build_vvstore(d, data, args)
        audit = (store / "audit.log").read_bytes()
        by_path = {p: data.contents[i] for p, i in zip(vv_victims, data.unreferenced, strict=True)}
        old = time.time() - AGE
        env = env_with(VVSTORE_HOME=str(store), DVC_NO_ANALYTICS="1",
                       DVC_SITE_CACHE_DIR=str(d / "dvc-site-cache"))
        work = d / "cwd"  # no project here or above: gc and du work on the store alone
        work.mkdir()
        blobs_dir = store / "blobs" / "blake3"

        def restore(victims: list[Path], contents: dict[Path, bytes],
                    mtime: float | None) -> Callable[[], None]:
            def fn() -> None:
                for p in victims:
                    if not os.path.lexists(p):
                        _write(p, contents[p], mtime)

            return fn

        vv_restore = restore(vv_victims, by_path, old)

        def vv_setup() -> None:
            vv_restore()
            (store / "audit.log").write_bytes(audit)

        def check(top: Path, expect: int, what: str) -> Callable[[], None]:
            def fn() -> None:
                left = _count_files(top)
                if left != expect:
                    raise CommandFailed(f"{what} left {left} objects, expected {expect}")

            return fn

        q = [vvstore, "-q"]
        cases = [
            Case(DU, [vvstore, "du"], setup=vv_setup, env=env, cwd=work, display="vvstore du"),
            Case(DRY, [vvstore, "gc", "--dry-run", "--grace", "0"], setup=vv_setup, env=env,
                 cwd=work, display="vvstore gc --dry-run --grace 0"),
            Case(SWEEP, [*q, "gc", "--grace", "0"], setup=vv_setup,
                 teardown=check(blobs_dir, vv_ref, "vvstore gc"), env=env, cwd=work,
                 display="vvstore -q gc --grace 0"),
        ]
        if dvc:
            repos, dvc_victims = _build_dvc(d, data, dvc, env, args)
            dvc_by_path = {p: data.contents[i] for p, i in zip(dvc_victims, data.unreferenced,
                                                                  strict=True)}
            dvc_restore = restore(dvc_victims, dvc_by_path, None)
            others = [str(r) for r in repos[1:]]
            objects = d / "dvc-cache" / "files" / "md5"
            cases += [
                Case(DVC_DRY, [dvc, "gc", "-w", "--dry", "-f", "-p", *others],
                     setup=dvc_restore, env=env, cwd=repos[0], optional=True,
                     display=f"dvc gc -w --dry -f -p <{len(others)} repos>"),
                Case(DVC_GC, [dvc, "gc", "-w", "-f", "-q", "-p", *others], setup=dvc_restore,
                     teardown=check(objects, vv_ref, "dvc gc"), env=env, cwd=repos[0],
                     optional=True, display=f"dvc gc -w -f -q -p <{len(others)} repos>"),
            ]
            # DVC first, then vvstore: the order of the table is the order of each round
            cases = [cases[0], cases[1], cases[3], cases[2], cases[4]]
        else:
            notes.append(f"`dvc` not found: its rows are skipped ({INSTALL_HINTS['dvc']})")
        samples = run_interleaved(cases, args.rounds, args, d, notes)
        vv_setup()
        args.log("in-process phases")
        phases = _phases(store, args, n)
        info = machine_info(d)
    info["load"] = f"1-minute load average {load_start:.2f} at the start, " + \
        info["load"].removeprefix("1-minute load average ")
    versions = [tool_version([vvstore, "--version"]), git_state()]
    if dvc:
        versions.append("dvc " + tool_version([dvc, "--version"]))
    info["tools"] = "; ".join(versions)

    pair = {DRY: DVC_DRY, SWEEP: DVC_GC}
    rows = [Row(c.name, c.display or shlex.join(c.argv), samples[c.name], n,
                "subject" if c.name.startswith("vvstore") else "anchor")
            for c in cases if c.name in samples]
    cli = TableReport(bench="gc", title=f"gc and du: {n:,} blobs, {PROJECTS} projects",
                      rows=rows, rate_header="blobs/s", rate_divisor=1)

    def vs_dvc(r: Row) -> str:
        other = cli.row(pair.get(r.name, ""))
        return f"{r.median / other.median:.2f}×" if other else "–"

    cli.extra = [("× its DVC row", vs_dvc)]
    cli_notes = []
    sw, dg = cli.row(SWEEP), cli.row(DVC_GC)
    if sw and dg:
        cli_notes.append(f"Sweep: `vvstore gc` takes {sw.median / dg.median:.2f}× the time of "
                         f"`dvc gc` deleting the same {len(data.unreferenced):,} blobs "
                         f"({len(data.unreferenced) / sw.median:,.0f} vs "
                         f"{len(data.unreferenced) / dg.median:,.0f} deletions/s).")
    dr, dd = cli.row(DRY), cli.row(DVC_DRY)
    if dr and dd:
        cli_notes.append(f"Planning: `vvstore gc --dry-run` takes {dr.median / dd.median:.2f}× "
                         f"the time of `dvc gc --dry`.")
    cli_notes += [
        f"{args.rounds} round{'s' if args.rounds != 1 else ''}, interleaved in the order of "
        "the table" + (" after an untimed warm-up round" if args.warmup else "") + "; medians. "
        "Times include process start-up. blobs/s is the store's blob count ÷ time.",
        f"Half of the {n:,} blobs ({vv_ref:,}, of which {PROJECTS * MODELS} tree documents) "
        f"are referenced by {PROJECTS} projects × {MODELS} tree models; both sweeps delete the "
        f"other {len(data.unreferenced):,}, which are written back (untimed) before the next "
        "command that needs them; the audit log is reset too (gc appends one line per "
        "victim). After each sweep the remaining objects are counted: exactly the "
        "referenced ones must be left.",
        f"Blobs are {MIN_BLOB}–{MAX_BLOB} random bytes. `vvstore gc --dry-run` prints one line "
        "per victim (to /dev/null here), as a user would see it.",
    ]
    cli.notes = cli_notes
    return ReportGroup(bench="gc", title=f"gc: {n:,} small blobs, {PROJECTS} projects",
                       parts=[cli, phases], info=info, notes=notes)
