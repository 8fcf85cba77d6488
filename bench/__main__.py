"""`python -m bench [NAME ...] [--size SIZE] [--rounds N] [--out FILE]`: run benchmarks.

With no NAME, every available benchmark runs. Results go to stdout as markdown and, with
`--out`, into that file between `<!-- bench:NAME:begin/end -->` markers (prose around them is
kept, so `--out docs/benchmarks.md` refreshes the measured tables in the docs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import available
from .common import BenchArgs, CommandFailed, parse_size, write_report


def _parser(names: list[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="vvstore benchmarks, side by side with their anchors; ratios matter.",
    )
    ap.add_argument("benchmarks", nargs="*", metavar="NAME",
                    help=f"benchmarks to run (default: all): {', '.join(names) or 'none found'}")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--size", action="append", default=[], metavar="[NAME=]SIZE",
                    help="data size, e.g. 1GiB, 256MiB, 2GB; NAME=SIZE for one benchmark only "
                         "(repeatable)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (default: 5)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed warm-up round")
    ap.add_argument("--tmpdir", type=Path,
                    help="where scratch files and the store go (default: the system temp dir); "
                         "choose the filesystem you want measured")
    ap.add_argument("--keep", action="store_true", help="keep scratch dirs for inspection")
    ap.add_argument("--out", type=Path, metavar="FILE",
                    help="also write the results into FILE (e.g. docs/benchmarks.md)")
    return ap


def _sizes(values: list[str], names: list[str], ap: argparse.ArgumentParser) -> dict[str, int]:
    """{'*': default override, name: override}."""
    sizes: dict[str, int] = {}
    for v in values:
        key, _, text = v.rpartition("=")
        key = key or "*"
        if key != "*" and key not in names:
            ap.error(f"--size {v}: no benchmark named {key!r}")
        try:
            sizes[key] = parse_size(text)
        except ValueError as e:
            ap.error(str(e))
        if sizes[key] <= 0:
            ap.error(f"--size {v}: must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    benches = available()
    ap = _parser(list(benches))
    ns = ap.parse_args(argv)
    if ns.list:
        for name, mod in benches.items():
            print(f"{name:10s} {getattr(mod, 'SUMMARY', '')}")
        return 0
    unknown = [n for n in ns.benchmarks if n not in benches]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(benches)}")
    if ns.rounds < 1:
        ap.error("--rounds must be at least 1")
    chosen = ns.benchmarks or list(benches)
    sizes = _sizes(ns.size, list(benches), ap)

    reports = []
    for name in chosen:
        args = BenchArgs(size=sizes.get(name, sizes.get("*")), rounds=ns.rounds,
                         warmup=ns.warmup, tmpdir=ns.tmpdir, keep=ns.keep)
        print(f"== bench {name} ==", file=sys.stderr, flush=True)
        try:
            report = benches[name].run(args)
        except CommandFailed as e:
            print(f"bench {name} failed: {e}", file=sys.stderr)
            return 1
        reports.append(report)
        print(report.markdown(), flush=True)
        if ns.out:  # write after each benchmark, so a later failure keeps earlier results
            write_report(ns.out, [report])
    if ns.out:
        print(f"wrote {ns.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
