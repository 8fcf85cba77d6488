"""fs: reading models through `vvstore://` (fsspec) beside plain `open()`, in-process.

Two tables (issue 6's benchmark):

- **throughput**: one cached model of random bytes (1 GiB unless `--size`) read whole in
  8 MiB `read()` calls through `fsspec.open("vvstore://big@1")` and through `open()` of the blob
  file itself, interleaved, page cache warm. Target: at least 0.95x the throughput of `open()`.
- **open latency**: a project whose manifest and lockfile list 1,000 single-file models
  (`m0@1` … `m999@1`, tiny blobs published with the library); the time to open
  `vvstore://m500@1` and close it, with a fresh filesystem instance per open
  (`skip_instance_cache=True`: a new process's first open) and with fsspec's cached instance
  (a pipeline's later opens), beside `VVStoreFileSystem.open` on one instance and plain
  `open()` + `close()` of the blob. Reported as median microseconds per open.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from .common import (
    BenchArgs,
    FnCase,
    ReportGroup,
    Row,
    TableReport,
    git_state,
    human_bytes,
    machine_info,
    make_random_file,
    run_interleaved_fn,
    scratch_dir,
    verdict,
    warm_file,
)

SUMMARY = ("read a 1 GiB model through fsspec vvstore:// vs open(); open latency by ref among "
           "1,000 locked models")
DEFAULT_SIZE = 1 << 30
CHUNK = 8 << 20
MODELS = 1000
TARGET = 0.95

VV_READ = "fsspec.open(vvstore://…)"
PLAIN_READ = "open(blob)"
FRESH = "vvstore:// open, fresh instance"
CACHED = "vvstore:// open, cached instance"
FS_OPEN = "fs.open(ref), one instance"
PLAIN_OPEN = "open(blob) + close"


def _project(project: Path, models: list[tuple[str, str, str, int]]) -> None:
    """vvstore.yaml and vvstore.lock listing single-file models (name, file, digest, size)."""
    from cas.lockfile import Hashes, LockedFile, LockedModel, Lockfile
    from cas.manifest import Manifest, ModelEntry, ModelManifest

    project.mkdir(parents=True, exist_ok=True)
    entries = [ModelEntry(name=n, version="1", file=f, digest=d, size=s) for n, f, d, s in models]
    ModelManifest(project / "vvstore.yaml", Manifest(models=entries)).save()
    locked = [LockedModel.build(n, "1", "file", [LockedFile(f, s, Hashes(blake3=d[7:]))])
              for n, f, d, s in models]
    Lockfile(models=locked).save(project / "vvstore.lock")


def _read_all(f: object) -> int:
    n = 0
    read = f.read  # type: ignore[attr-defined]
    while data := read(CHUNK):
        n += len(data)
    return n


def run(args: BenchArgs) -> ReportGroup:
    import fsspec

    from cas.blobs import BlobStore
    from cas.digest import Digest
    from cas.fs import VVStoreFileSystem

    size = args.size or DEFAULT_SIZE
    load_start = os.getloadavg()[0]
    with scratch_dir(args, "fs") as d:
        store = BlobStore(d / "store")
        sdir = str(store.root)

        # --- one large model -------------------------------------------------------------
        args.log(f"publishing one {human_bytes(size)} model")
        src = d / "model.bin"
        make_random_file(src, size)
        big = store.publish_file(src, link="hardlink")
        src.unlink()
        big_path = store.path(big.digest)
        big_project = d / "big-project"
        _project(big_project, [("big", "model.bin", str(big.digest), size)])
        warm_file(big_path)
        opts = {"project": str(big_project), "store": sdir}

        def vv_read() -> None:
            with fsspec.open("vvstore://big@1", "rb", **opts) as f:
                assert _read_all(f) == size

        def plain_read() -> None:
            with open(big_path, "rb") as f:
                assert _read_all(f) == size

        read_cases = [FnCase(VV_READ, vv_read, display='fsspec.open("vvstore://big@1") → '
                                                      'read(8 MiB) to the end'),
                      FnCase(PLAIN_READ, plain_read, display='open(blob_path, "rb") → '
                                                             'read(8 MiB) to the end')]
        args.log("throughput: vvstore:// vs open()")
        read_samples = run_interleaved_fn(read_cases, args.rounds, args, samples_per_round=3)

        # --- 1,000 locked models ---------------------------------------------------------
        args.log(f"publishing {MODELS} small models and their lockfile")
        models = []
        for i in range(MODELS):
            pub = store.publish_bytes(f"model {i}\n".encode() + os.urandom(56))
            models.append((f"m{i}", f"m{i}.onnx", str(pub.digest), pub.size))
        many = d / "many-project"
        _project(many, models)
        target = models[MODELS // 2]
        url = f"vvstore://{target[0]}@1"
        blob = store.path(Digest.parse(target[2]))
        mopts = {"project": str(many), "store": sdir}
        one = VVStoreFileSystem(project=str(many), store=sdir, skip_instance_cache=True)

        def fresh() -> None:
            fsspec.open(url, "rb", skip_instance_cache=True, **mopts).open().close()

        def cached() -> None:
            fsspec.open(url, "rb", **mopts).open().close()

        def fs_open() -> None:
            one.open(f"{target[0]}@1", "rb").close()

        def plain_open() -> None:
            open(blob, "rb").close()

        open_cases = [
            FnCase(FRESH, fresh, repeat=5,
                   display=f'fsspec.open("{url}", skip_instance_cache=True).open()'),
            FnCase(CACHED, cached, repeat=200, display=f'fsspec.open("{url}").open()'),
            FnCase(FS_OPEN, fs_open, repeat=200, display=f'fs.open("{target[0]}@1")'),
            FnCase(PLAIN_OPEN, plain_open, repeat=200, display='open(blob_path, "rb")'),
        ]
        args.log("open latency")
        open_samples = run_interleaved_fn(open_cases, args.rounds, args, samples_per_round=5,
                                          unit=1e6, unit_name="µs")
        info = machine_info(d)
    info["load"] = f"1-minute load average {load_start:.2f} at the start, " + \
        info["load"].removeprefix("1-minute load average ")
    info["tools"] = f"{git_state()}; fsspec {fsspec.__version__}"

    read_rows = [Row(c.name, c.display or c.name, read_samples[c.name], size,
                     "subject" if c.name == VV_READ else "anchor") for c in read_cases]
    thr = TableReport(bench="fs", title=f"read one {human_bytes(size)} model in 8 MiB chunks",
                      rows=read_rows, ratio_to=[("× open() time", PLAIN_READ)],
                      extra=[("throughput × open()",
                              lambda r: f"{_median(read_samples[PLAIN_READ]) / r.median:.3f}×")],
                      show_rss=False)
    vv, plain = thr.row(VV_READ), thr.row(PLAIN_READ)
    thr.notes = []
    if vv and plain:
        thr.notes.append(verdict("throughput of vvstore:// ÷ open()", plain.median / vv.median,
                                 TARGET, at_most=False))
    thr.notes.append(f"{args.rounds} round{'s' if args.rounds != 1 else ''} of 3 reads each, "
                     "the two interleaved" + (" after an untimed warm-up round" if args.warmup
                                              else "") +
                     "; medians over all reads. In one process; the blob is in the page cache. "
                     "`vvstore://` hands back the blob's own file object, so after the open "
                     "both rows run the same `read()` calls.")

    open_rows = [Row(c.name, c.display or c.name, open_samples[c.name], 0,
                     "subject" if c.name.startswith(("vvstore", "fs.open")) else "anchor")
                 for c in open_cases]
    lat = TableReport(bench="fs", title=f"open + close by ref, a project locking {MODELS:,} "
                                        "models", rows=open_rows, unit="µs", rate_header="",
                      ratio_to=[("× open()", PLAIN_OPEN)], show_rss=False)
    fr, ca = lat.row(FRESH), lat.row(CACHED)
    lat.notes = []
    if fr and ca:
        lat.notes.append(f"Median per open: {fr.median * 1e6:,.0f} µs with a fresh filesystem "
                         f"instance, {ca.median * 1e6:,.0f} µs with fsspec's cached one "
                         f"({fr.median / ca.median:,.0f}× less).")
    lat.notes.append(f"{args.rounds} round{'s' if args.rounds != 1 else ''} × 5 samples; a "
                     "sample is the mean of 5 opens (fresh instance) or 200 (the others). Each "
                     "open resolves the ref, freshens the blob's use time (`utime`) and opens "
                     "it; `fs.open` skips fsspec's URL parsing and instance lookup.")
    return ReportGroup(bench="fs", title="fs: vvstore:// through fsspec", parts=[thr, lat],
                       info=info)


def _median(samples: list) -> float:  # type: ignore[type-arg]
    return statistics.median(s.seconds for s in samples)
