"""verify: re-hash every blob of a store (`vvstore verify`) beside `b3sum` of the same files.

The store holds 8 blobs of random bytes (2 GiB in all unless `--size`), published with the
library (`BlobStore.publish_file`, hardlinked from the scratch files, so building it copies
nothing). `vvstore verify` hashes every blob and checks it against its name; `b3sum` hashes the
same blob files (multi-threaded, memory-mapped), `b3sum --num-threads 1` on one core, and
`cat > /dev/null` reads them, which is the floor for any verifier. The page cache is warm.
Issue 4 sets no numeric target: it asks for the comparison.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from .common import (
    INSTALL_HINTS,
    BenchArgs,
    Case,
    Row,
    TableReport,
    env_with,
    find_tool,
    git_state,
    human_bytes,
    machine_info,
    make_random_file,
    run_interleaved,
    scratch_dir,
    tool_version,
    warm_file,
)

SUMMARY = "re-hash a store's blobs: vvstore verify vs b3sum and cat of the same files"
DEFAULT_SIZE = 2 << 30  # 8 blobs of 256 MiB
BLOBS = 8

VV = "vvstore verify"
VV1 = "vvstore verify -j 1"
B3 = "b3sum"
B3_1 = "b3sum (1 thread)"
CAT = "cat > /dev/null"


def run(args: BenchArgs) -> TableReport:
    from cas.blobs import BlobStore

    size = args.size or DEFAULT_SIZE
    each = max(1, size // BLOBS)
    size = each * BLOBS
    vvstore = find_tool("vvstore")
    if vvstore is None:
        raise SystemExit(f"vvstore not found: {INSTALL_HINTS['vvstore']}")
    notes: list[str] = []
    load_start = os.getloadavg()[0]
    with scratch_dir(args, "verify") as d:
        store_dir = d / "store"
        store = BlobStore(store_dir)
        blobs: list[Path] = []
        args.log(f"publishing {BLOBS} blobs of {human_bytes(each)}")
        for i in range(BLOBS):
            src = d / f"src{i}.bin"
            make_random_file(src, each)
            pub = store.publish_file(src, link="hardlink")
            src.unlink()  # the blob keeps the inode
            blobs.append(store.path(pub.digest))
        for b in blobs:
            warm_file(b)
        files = [str(b) for b in blobs]
        env = env_with(VVSTORE_HOME=str(store_dir))
        cases = [
            Case(VV, [vvstore, "-q", "verify"], env=env, cwd=d, display="vvstore verify"),
            Case(VV1, [vvstore, "-q", "verify", "--jobs", "1"], env=env, cwd=d,
                 display="vvstore verify --jobs 1"),
        ]
        b3sum = find_tool("b3sum")
        if b3sum:
            cases += [Case(B3, [b3sum, *files], display="b3sum BLOBS…"),
                      Case(B3_1, [b3sum, "--num-threads", "1", *files],
                           display="b3sum --num-threads 1 BLOBS…")]
        else:
            notes.append(f"`b3sum` not on PATH: its rows are skipped ({INSTALL_HINTS['b3sum']})")
        cases.append(Case(CAT, ["sh", "-c", 'cat "$@" > /dev/null', "sh", *files],
                          display="cat BLOBS… > /dev/null"))
        samples = run_interleaved(cases, args.rounds, args, d, notes)
        info = machine_info(d)
    info["load"] = f"1-minute load average {load_start:.2f} at the start, " + \
        info["load"].removeprefix("1-minute load average ")
    versions = [tool_version([vvstore, "--version"]), git_state()]
    if b3sum:
        versions.append(tool_version([b3sum, "--version"]))
    info["tools"] = "; ".join(versions)
    rows = [Row(c.name, c.display or shlex.join(c.argv), samples[c.name], size,
                "subject" if c.name.startswith("vvstore") else "anchor")
            for c in cases if c.name in samples]
    rep = TableReport(bench="verify",
                      title=f"verify: {BLOBS} blobs × {human_bytes(each)} ({human_bytes(size)})",
                      rows=rows, ratio_to=[("× b3sum", B3), ("× cat", CAT)], info=info)
    vv, b3 = rep.row(VV), rep.row(B3)
    if vv and b3:
        notes.insert(0, f"`vvstore verify` takes {vv.median / b3.median:.2f}× the time of "
                        f"`b3sum` on the same files ({vv.rate_gbs:.2f} vs "
                        f"{b3.rate_gbs:.2f} GB/s).")
    notes += [
        f"{args.rounds} round{'s' if args.rounds != 1 else ''}, interleaved in the order of "
        "the table" + (" after an untimed warm-up round" if args.warmup else "") + "; medians. "
        "The page cache is warm (the blobs were just written and read). Times include "
        "process start-up. GB/s is 10⁹ bytes per second.",
        "`vvstore verify` with no REF checks every blob of the store and needs no project; "
        "by default it runs one thread per core, each hashing whole blobs on one core with a "
        "1 MiB read loop; `--jobs 1` hashes one blob at a time with BLAKE3's multi-threaded "
        "hash (16 MiB reads). `b3sum` memory-maps each file and hashes it with every core, "
        "so its peak RSS counts the mapped pages.",
    ]
    rep.notes = notes
    return rep
