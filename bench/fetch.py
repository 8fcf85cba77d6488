"""fetch: `vvstore fetch` beside s3fs, `dvc pull` and curl, on loopback servers.

Three parts, each its own table (issue 3's benchmark):

- **one large file from S3** (moto's server): `vvstore fetch` into a fresh store vs s3fs's
  `get_file` of the same object (one streamed GET, and its default ranged mode) vs `dvc pull`
  from a DVC S3 remote on the same server, plus a *design* row: one streamed GET hashed with
  BLAKE3 while written and fsynced, the least a verified fetch must do. Targets: vvstore within
  10% of the faster s3fs row; at least 2x faster than `dvc pull`. Size: `--size` (1 GiB).
- **many small files through a 20 ms proxy**: 2,000 files of 256 KiB, one tree model added from
  `s3://bucket/prefix`, fetched through `MotoS3.delay_proxy(0.020)` (a WAN-like round trip per
  request), vs `dvc pull` of the same directory through the same proxy. Target: at least 2x
  faster than `dvc pull`. Requests per run are counted at the proxy.
- **ranged parallel download over throttled HTTP**: one 512 MiB file from a local
  `FaultyHTTPServer` that limits every connection to 50 MB/s; `vvstore fetch` (parallel byte
  ranges) vs a single stream (`curl`, and `vvstore fetch --jobs 1`). Target: at least 4x.

Environment knobs (the `--size` option sets only the first part's size):
`VVSTORE_BENCH_FETCH_PARTS` (comma list of `s3`, `many`, `ranged`; default all three),
`VVSTORE_BENCH_FETCH_FILES` (2000), `VVSTORE_BENCH_FETCH_FILE_SIZE` (256KiB),
`VVSTORE_BENCH_FETCH_DELAY` (0.020 s), `VVSTORE_BENCH_FETCH_RANGED_SIZE` (512MiB),
`VVSTORE_BENCH_FETCH_RATE` (50MB, per connection per second).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    INSTALL_HINTS,
    BenchArgs,
    Case,
    CommandFailed,
    ReportGroup,
    Row,
    TableReport,
    env_with,
    find_tool,
    git_state,
    human_bytes,
    import_test_servers,
    machine_info,
    make_random_file,
    mem_available,
    parse_size,
    rmtree_force,
    run_interleaved,
    run_quiet,
    scratch_dir,
    tool_version,
    verdict,
)

SUMMARY = ("fetch: one large file from moto S3 (vs s3fs, dvc pull), 2,000 small files through "
           "a 20 ms proxy (vs dvc pull), ranged parallel HTTP (vs one stream)")
DEFAULT_SIZE = 1 << 30  # the large S3 object
FALLBACK_SIZE = 256 << 20
MOTO_MEMORY_FACTOR = 8  # moto held ~4.5 GiB serving a 1 GiB object here; 13 GiB for 2 GiB
BUCKET = "vvbench"

VV = "vvstore fetch"
S3FS_STREAM = "s3fs get_file (1 GET)"
S3FS_RANGED = "s3fs get_file (ranged)"
DESIGN = "py stream+hash (design)"
DVC = "dvc pull"

# one streamed GET, BLAKE3 while writing, fsync, digest checked: what a verified fetch must do
DESIGN_CODE = r"""
import os, sys, blake3, s3fs
from fsspec.asyn import sync
fs = s3fs.S3FileSystem()
bucket, key = sys.argv[1].split("/", 1)
body = fs.call_s3("get_object", Bucket=bucket, Key=key)["Body"]
h = blake3.blake3()
with open(sys.argv[2], "wb") as f:
    while chunk := sync(fs.loop, body.read, 4 << 20):
        h.update(chunk)
        f.write(chunk)
    f.flush()
    os.fsync(f.fileno())
body.close()
if "blake3:" + h.hexdigest() != sys.argv[3]:
    sys.exit("digest mismatch")
"""
S3FS_MANY = "s3fs get -r, 32 in flight"
# 32 connections too: botocore's default pool of 10 would cap it at 10 requests at once
S3FS_GET_CODE = ("import s3fs, sys; s3fs.S3FileSystem(config_kwargs={'max_pool_connections': "
                 "32}).get(sys.argv[1], sys.argv[2], recursive=True, batch_size=32)")
S3FS_CODE = ("import s3fs, sys; s3fs.S3FileSystem().get_file(sys.argv[1], sys.argv[2]"
             "{extra})")


def _knob(name: str, default: str) -> str:
    return os.environ.get(f"VVSTORE_BENCH_FETCH_{name}", default)


def _vv_manifest(project: Path, name: str, file: str, source: str, digest: str,
                 size: int) -> None:
    """A project whose manifest wants one file model with a known digest and size."""
    from cas.manifest import Manifest, ModelEntry, ModelManifest

    project.mkdir(parents=True, exist_ok=True)
    entry = ModelEntry(name=name, version="1", file=file, sources=[source], digest=digest,
                       size=size)
    ModelManifest(project / "vvstore.yaml", Manifest(models=[entry])).save()


class _Env:
    """Child environments for one part: AWS settings for moto, scratch config files."""

    def __init__(self, d: Path) -> None:
        self.d = d
        empty = d / "aws-config"
        empty.touch()
        # dvc-s3 opens AWS_CONFIG_FILE itself and fails on /dev/null: an empty file works for all
        self.aws_files = {"AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)}

    def make(self, moto_env: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        env = env_with(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(self.d / "dvc-site-cache"),
                       **extra)
        env.pop("AWS_PROFILE", None)
        if moto_env:
            env.update(moto_env)
            env.update(self.aws_files)
        return env


def _dvc_repo(dvc: str, repo: Path, env: dict[str, str], endpoint: str, prefix: str) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    run_quiet([dvc, "init", "--no-scm", "-q"], env=env, cwd=repo)
    run_quiet([dvc, "remote", "add", "-d", "s3remote", f"s3://{BUCKET}/{prefix}"], env=env,
              cwd=repo)
    run_quiet([dvc, "remote", "modify", "s3remote", "endpointurl", endpoint], env=env, cwd=repo)


def _dvc_clear(repo: Path, target: str) -> Callable[[], None]:
    def clear() -> None:
        for p in (repo / ".dvc" / "cache", repo / ".dvc" / "tmp", repo / target):
            if p.is_dir():
                rmtree_force(p)
            else:
                p.unlink(missing_ok=True)

    return clear


# --- part 1: one large file from S3 ------------------------------------------------------


def _large(args: BenchArgs, d: Path, size: int, envs: _Env) -> TableReport:
    import_test_servers()
    from cas.digest import hash_file
    from tests.servers.s3 import MotoS3

    notes: list[str] = []
    vvstore = find_tool("vvstore")
    assert vvstore
    with MotoS3() as moto:
        client = moto.client()
        client.create_bucket(Bucket=BUCKET)
        src = d / "big.bin"
        args.log(f"writing {human_bytes(size)} of random bytes and putting it into moto")
        make_random_file(src, size)
        digest, _ = hash_file(src)
        with open(src, "rb") as f:
            client.put_object(Bucket=BUCKET, Key="big.bin", Body=f)
        env = envs.make(moto.env())

        project, store = d / "project", d / "store"
        _vv_manifest(project, "big", "big.bin", f"s3://{BUCKET}/big.bin", str(digest), size)
        vv_env = {**env, "VVSTORE_HOME": str(store)}
        out = d / "out.bin"

        def rm_store() -> None:
            rmtree_force(store)

        def rm_out() -> None:
            out.unlink(missing_ok=True)

        py = sys.executable
        cases = [
            Case(VV, [vvstore, "-q", "-C", str(project), "fetch"], setup=rm_store,
                 teardown=rm_store, env=vv_env, display="vvstore fetch (fresh store)"),
            Case(S3FS_STREAM, [py, "-c", S3FS_CODE.format(extra=", max_concurrency=1"),
                               f"{BUCKET}/big.bin", str(out)], teardown=rm_out, env=env,
                 display="fs.get_file(..., max_concurrency=1)"),
            Case(S3FS_RANGED, [py, "-c", S3FS_CODE.format(extra=""), f"{BUCKET}/big.bin",
                               str(out)], teardown=rm_out, env=env,
                 display="fs.get_file(...) (10 × 50 MiB ranges)"),
            Case(DESIGN, [py, "-c", DESIGN_CODE, f"{BUCKET}/big.bin", str(out), str(digest)],
                 teardown=rm_out, env=env, optional=True,
                 display="one GET, blake3 while writing, fsync"),
        ]
        dvc = find_tool("dvc")
        if dvc:
            repo = d / "dvc-repo"
            args.log("dvc add + dvc push (untimed)")
            _dvc_repo(dvc, repo, env, moto.endpoint_url, "dvcstore")
            run_quiet(["cp", str(src), str(repo / "big.bin")])
            run_quiet([dvc, "add", "-q", "big.bin"], env=env, cwd=repo)
            run_quiet([dvc, "push", "-q"], env=env, cwd=repo)
            clear = _dvc_clear(repo, "big.bin")
            clear()
            cases.append(Case(DVC, [dvc, "pull", "-q"], setup=clear, teardown=clear, env=env,
                              cwd=repo, optional=True, display="dvc pull (empty cache)"))
        else:
            notes.append(f"`dvc` not found: its row is skipped ({INSTALL_HINTS['dvc']})")
        src.unlink()
        timing_args = args
        if args.warmup and size > FALLBACK_SIZE:
            # at 1 GiB one vvstore fetch takes minutes here; the setup (put, dvc push) has
            # already warmed moto and every tool's imports
            timing_args = dataclasses.replace(args, warmup=False)
            notes.append("No warm-up round for this table (its size makes each round long); "
                         "moto and every tool's imports were warmed by the untimed setup.")
        samples = run_interleaved(cases, args.rounds, timing_args, d, notes)

    rows = [Row(c.name, c.display or shlex.join(c.argv), samples[c.name], size,
                "subject" if c.name == VV else "anchor") for c in cases if c.name in samples]
    rep = TableReport(bench="fetch", title=f"one {human_bytes(size)} object from moto S3",
                      rows=rows, ratio_to=[("× s3fs 1 GET", S3FS_STREAM), ("× dvc pull", DVC)])
    vv = rep.row(VV)
    s3 = [r for r in (rep.row(S3FS_STREAM), rep.row(S3FS_RANGED)) if r]
    if vv and s3:
        best = min(s3, key=lambda r: r.median)
        notes.insert(0, verdict(f"vvstore fetch time ÷ fastest s3fs ({best.name})",
                                vv.median / best.median, 1.10, at_most=True))
    dv = rep.row(DVC)
    if vv and dv:
        notes.insert(1, verdict("dvc pull time ÷ vvstore fetch time (speed-up)",
                                dv.median / vv.median, 2.0, at_most=False))
    notes += [
        "Every command starts with nothing local: vvstore a fresh store (the project's manifest "
        "already knows the digest and size), s3fs a new output file, DVC an empty cache and "
        "workspace (its remote was filled once by `dvc push`, untimed). `dvc pull` writes the "
        "file twice (cache, then a copy in the workspace). vvstore and the design row fsync "
        "the file; s3fs does not (a `sync` follows every command, outside the timed region).",
        "moto reads the whole object for every ranged GET, so any reader that splits the "
        "object into many ranges pays (number of ranges × object size) on this server: "
        "that is why `s3fs get_file (ranged)` is slower than its single GET here. "
        "`vvstore fetch` reads an S3 object in one streamed GET (ranged only to resume).",
    ]
    rep.notes = notes
    return rep


def _large_with_fallback(args: BenchArgs, d: Path, envs: _Env) -> TableReport:
    size = args.size or DEFAULT_SIZE
    note = None
    need = MOTO_MEMORY_FACTOR * size
    if size > FALLBACK_SIZE and mem_available() and mem_available() < need:
        note = (f"only {human_bytes(mem_available())} of memory available (moto needs about "
                f"{human_bytes(need)} to serve {human_bytes(size)}): measured "
                f"{human_bytes(FALLBACK_SIZE)} instead")
        size = FALLBACK_SIZE
    (d / "large").mkdir(exist_ok=True)
    try:
        rep = _large(args, d / "large", size, envs)
    except (CommandFailed, MemoryError, OSError) as e:
        if size <= FALLBACK_SIZE:
            raise
        note = (f"{human_bytes(size)} failed ({str(e).splitlines()[0][:200]}); measured "
                f"{human_bytes(FALLBACK_SIZE)} instead")
        args.log(f"note: {note}")
        rmtree_force(d / "large")
        (d / "large").mkdir()
        rep = _large(args, d / "large", FALLBACK_SIZE, envs)
    if note:
        args.log(f"note: {note}")
        rep.notes.insert(0, note)
    return rep


# --- part 2: many small files through a delaying proxy -------------------------------------


def _many(args: BenchArgs, d: Path, envs: _Env) -> TableReport:
    import_test_servers()
    from tests.servers.s3 import MotoS3

    n = int(_knob("FILES", "2000"))
    fsize = parse_size(_knob("FILE_SIZE", "256KiB"))
    delay = float(_knob("DELAY", "0.020"))
    notes: list[str] = []
    vvstore = find_tool("vvstore")
    assert vvstore
    dvc = find_tool("dvc")
    with MotoS3() as moto:
        client = moto.client()
        client.create_bucket(Bucket=BUCKET)
        repo = d / "dvc-repo"
        (repo / "data").mkdir(parents=True)
        args.log(f"putting {n} × {human_bytes(fsize)} into moto")
        for i in range(n):
            data = os.urandom(fsize)
            name = f"f{i:05d}.bin"
            client.put_object(Bucket=BUCKET, Key=f"many/{name}", Body=data)
            (repo / "data" / name).write_bytes(data)
        env = envs.make(moto.env())
        project, store = d / "project", d / "store"
        project.mkdir()
        vv_env = {**env, "VVSTORE_HOME": str(store)}
        args.log("vvstore add s3://…/many (untimed)")
        run_quiet([vvstore, "-q", "-C", str(project), "init"], env=vv_env)
        run_quiet([vvstore, "-q", "-C", str(project), "add", f"s3://{BUCKET}/many",
                   "--name", "many"], env=vv_env)
        if dvc:
            args.log("dvc add + dvc push (untimed)")
            _dvc_repo(dvc, repo, env, moto.endpoint_url, "dvcstore")
            run_quiet([dvc, "add", "-q", "data"], env=env, cwd=repo)
            run_quiet([dvc, "push", "-q"], env=env, cwd=repo)
        rmtree_force(store)

        proxy_url = moto.delay_proxy(delay)
        proxy = moto.proxies[-1]
        penv = envs.make(moto.env(proxy_url))
        vv_penv = {**penv, "VVSTORE_HOME": str(store)}
        requests: dict[str, int] = {}

        def vv_setup() -> None:
            rmtree_force(store)
            proxy.requests.clear()

        def counted(name: str, then: Callable[[], None]) -> Callable[[], None]:
            def teardown() -> None:
                requests[name] = proxy.request_count
                then()

            return teardown

        def rm_store() -> None:
            rmtree_force(store)

        cases = []
        for jobs in (None, 32):
            name = VV if jobs is None else f"{VV} -j {jobs}"
            argv = [vvstore, "-q", "-C", str(project), "fetch"] + ([] if jobs is None else
                                                                  ["--jobs", str(jobs)])
            cases.append(Case(name, argv, setup=vv_setup, teardown=counted(name, rm_store),
                              env=vv_penv, display=shlex.join(["vvstore", *argv[4:]])))
        out = d / "s3fs-out"

        def s3fs_setup() -> None:
            rmtree_force(out)
            proxy.requests.clear()

        def rm_out() -> None:
            rmtree_force(out)

        # the server's ceiling: one GET per file (after a listing), 32 in flight, no hashing
        cases.append(Case(S3FS_MANY, [sys.executable, "-c", S3FS_GET_CODE, f"{BUCKET}/many",
                                      str(out)], setup=s3fs_setup,
                          teardown=counted(S3FS_MANY, rm_out), env=penv, optional=True,
                          display="fs.get(prefix, dir, recursive=True, batch_size=32), "
                                  "32 connections"))
        if dvc:
            run_quiet([dvc, "remote", "modify", "s3remote", "endpointurl", proxy_url], env=env,
                      cwd=repo)
            clear = _dvc_clear(repo, "data")

            def dvc_setup() -> None:
                clear()
                proxy.requests.clear()

            clear()
            for jobs in (None, 32):
                name = DVC if jobs is None else f"{DVC} -j {jobs}"
                argv = [dvc, "pull", "-q"] + ([] if jobs is None else ["-j", str(jobs)])
                cases.append(Case(name, argv, setup=dvc_setup, teardown=counted(name, clear),
                                  env=penv, cwd=repo, optional=True,
                                  display=shlex.join(["dvc", *argv[1:]])))
        else:
            notes.append(f"`dvc` not found: its rows are skipped ({INSTALL_HINTS['dvc']})")
        samples = run_interleaved(cases, args.rounds, args, d, notes)

    total = n * fsize
    rows = [Row(c.name, c.display or shlex.join(c.argv), samples[c.name], total,
                "subject" if c.name.startswith(VV) else "anchor")
            for c in cases if c.name in samples]
    rep = TableReport(
        bench="fetch",
        title=f"{n:,} files × {human_bytes(fsize)} from moto S3 through a "
              f"{delay * 1000:g} ms-per-request proxy",
        rows=rows, ratio_to=[("× dvc pull", DVC)],
        extra=[("files/s", lambda r: f"{n / r.median:,.0f}"),
               ("requests", lambda r: f"{requests.get(r.name, 0):,}")])
    vv, dv = rep.row(VV), rep.row(DVC)
    if vv and dv:
        notes.insert(0, verdict("dvc pull time ÷ vvstore fetch time, default jobs (speed-up)",
                                dv.median / vv.median, 2.0, at_most=False))
        vv_best = min((r for r in rows if r.name.startswith(VV)), key=lambda r: r.median)
        dv_best = min((r for r in rows if r.name.startswith(DVC)), key=lambda r: r.median)
        notes.insert(1, f"best of each ({vv_best.name} vs {dv_best.name}): "
                        f"{dv_best.median / vv_best.median:.2f}× speed-up")
        ceiling = rep.row(S3FS_MANY)
        if ceiling:
            notes.insert(2, "the server's ceiling, s3fs with 32 requests in flight and nothing "
                            f"hashed or fsynced: {dv.median / ceiling.median:.2f}× dvc pull's "
                            "speed. No client can go faster than moto and the proxy answer; "
                            "a target above this is not reachable on this machine.")
    notes += [
        f"One tree model of {n:,} files, added once with `vvstore add s3://{BUCKET}/many` "
        "(untimed), so the lockfile knows every file's digest and size; each round fetches "
        "it into a fresh store. DVC pulls the same files (a `dvc add`ed directory, pushed "
        "once) into an empty cache and workspace. Both go through the same proxy, which "
        f"sleeps {delay * 1000:g} ms before forwarding each request to moto; `requests` is "
        "what the proxy counted in the last run.",
        "DVC's default jobs are 8 on this 2-core machine (`4 × cpu_count`); vvstore keeps "
        "32 small S3 files in flight by default (16 per CPU, as coroutines on fsspec's event "
        "loop), 8 transfers by thread otherwise. The s3fs row is no tool a user would run for "
        "this but the server's ceiling: one listing, then one GET per file with 32 in flight, "
        "nothing hashed or fsynced.",
    ]
    rep.notes = notes
    return rep


# --- part 3: ranged parallel HTTP --------------------------------------------------------


def _ranged(args: BenchArgs, d: Path, envs: _Env) -> TableReport:
    import_test_servers()
    from cas.digest import hash_bytes
    from tests.servers.http_server import FaultyHTTPServer

    size = parse_size(_knob("RANGED_SIZE", "512MiB"))
    rate = float(parse_size(_knob("RATE", "50MB")))
    notes: list[str] = []
    vvstore = find_tool("vvstore")
    assert vvstore
    args.log(f"serving {human_bytes(size)} at {rate / 1e6:g} MB/s per connection")
    data = os.urandom(size)
    digest = hash_bytes(data)
    requests: dict[str, int] = {}
    with FaultyHTTPServer({"/model.bin": data}, rate_limit_bps=rate) as srv:
        project, store, out = d / "project", d / "store", d / "out.bin"
        _vv_manifest(project, "model", "model.bin", srv.url("/model.bin"), str(digest), size)
        vv_env = envs.make(None, VVSTORE_HOME=str(store))

        def setup() -> None:
            rmtree_force(store)
            out.unlink(missing_ok=True)
            srv.reset_counters()

        def teardown_for(name: str) -> Callable[[], None]:
            def teardown() -> None:
                requests[name] = sum(1 for r in srv.requests if r[0] == "GET")
                rmtree_force(store)
                out.unlink(missing_ok=True)

            return teardown

        cases = []
        for jobs, name in ((None, VV), (16, f"{VV} -j 16"), (1, f"{VV} -j 1")):
            argv = [vvstore, "-q", "-C", str(project), "fetch"] + ([] if jobs is None else
                                                                  ["--jobs", str(jobs)])
            cases.append(Case(name, argv, setup=setup, teardown=teardown_for(name),
                              env=vv_env, display=shlex.join(["vvstore", *argv[4:]])))
        curl = find_tool("curl")
        if curl:
            cases.append(Case("curl (1 stream)", [curl, "-sS", "-o", str(out),
                                                  srv.url("/model.bin")],
                              setup=setup, teardown=teardown_for("curl (1 stream)"),
                              display="curl -o FILE URL"))
        else:
            notes.append("`curl` not found: its row is skipped (Debian/Ubuntu: "
                         "`apt-get install curl`)")
        samples = run_interleaved(cases, args.rounds, args, d, notes)
    del data

    rows = [Row(c.name, c.display or shlex.join(c.argv), samples[c.name], size,
                "subject" if c.name.startswith(VV) and c.name != f"{VV} -j 1" else "anchor")
            for c in cases if c.name in samples]
    single = "curl (1 stream)" if "curl (1 stream)" in samples else f"{VV} -j 1"
    rep = TableReport(
        bench="fetch",
        title=f"one {human_bytes(size)} file over HTTP, {rate / 1e6:g} MB/s per connection",
        rows=rows, ratio_to=[("× 1 stream", single)],
        extra=[("GETs", lambda r: str(requests.get(r.name, "–")))])
    vv, one = rep.row(VV), rep.row(single)
    if vv and one:
        notes.insert(0, verdict(f"{single} time ÷ vvstore fetch time, default jobs (speed-up)",
                                one.median / vv.median, 4.0, at_most=False))
    notes += [
        "The server (tests/servers/http_server.py, in the benchmark's process) paces every "
        f"response body at {rate / 1e6:g} MB/s per connection, like a WAN link; parallel "
        "byte ranges scale with connections. vvstore fetches into a fresh store each round, "
        "verifies and fsyncs; curl only writes the file.",
    ]
    rep.notes = notes
    return rep


# --- the benchmark ------------------------------------------------------------------------


def run(args: BenchArgs) -> ReportGroup:
    vvstore = find_tool("vvstore")
    if vvstore is None:
        raise SystemExit(f"vvstore not found: {INSTALL_HINTS['vvstore']}")
    wanted = [p.strip() for p in _knob("PARTS", "s3,many,ranged").split(",") if p.strip()]
    unknown = set(wanted) - {"s3", "many", "ranged"}
    if unknown:
        raise SystemExit(f"VVSTORE_BENCH_FETCH_PARTS: unknown part(s) {', '.join(unknown)}")
    load_start = os.getloadavg()[0]
    parts: list[Any] = []
    with scratch_dir(args, "fetch") as d:
        envs = _Env(d)
        for part in wanted:
            sub = d / part
            sub.mkdir()
            args.log(f"-- fetch part: {part}")
            if part == "s3":
                parts.append(_large_with_fallback(args, sub, envs))
            elif part == "many":
                parts.append(_many(args, sub, envs))
            else:
                parts.append(_ranged(args, sub, envs))
            rmtree_force(sub)
        info = machine_info(d)
    info["load"] = f"1-minute load average {load_start:.2f} at the start, " + \
        info["load"].removeprefix("1-minute load average ")
    versions = [tool_version([vvstore, "--version"]), git_state()]
    dvc = find_tool("dvc")
    if dvc:
        versions.append("dvc " + tool_version([dvc, "--version"]))
    try:
        from importlib.metadata import version

        versions += [f"s3fs {version('s3fs')}", f"moto {version('moto')}"]
    except Exception:  # noqa: BLE001 - versions are decoration
        pass
    info["tools"] = "; ".join(versions)
    return ReportGroup(
        bench="fetch", title="fetch: S3, many small files, ranged HTTP", parts=parts, info=info,
        notes=[f"{args.rounds} round{'s' if args.rounds != 1 else ''} per table, interleaved in "
               "the order of the table"
               + (" after an untimed warm-up round" if args.warmup else "")
               + "; medians. Times include process start-up. Ratio columns are time ÷ the "
               "named row's time (below 1× is faster); verdicts state speed-ups. "
               "GB/s is 10⁹ bytes per second."])
