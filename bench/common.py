"""Shared helpers for the benchmarks: sizes, tools, temp dirs, the timing loop, tables.

A benchmark is a module `bench/<name>.py` exposing:

    SUMMARY: str                      one line for `python -m bench --list`
    DEFAULT_SIZE: int                 bytes (optional; `--size` overrides)
    def run(args: BenchArgs) -> Report

Timing uses only public tools: `time.perf_counter()` around `subprocess.run`, and GNU time
(`/usr/bin/time -v`) for each command's peak RSS. Commands of one benchmark run interleaved
(A B C, A B C, ...) after an untimed warm-up round, so drift on a noisy machine hits all of them
alike; compare ratios within one run, not absolute numbers between runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import re
import shlex
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --- sizes -----------------------------------------------------------------------------------

_UNITS = {
    "": 1, "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4,
    "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4,
}


def parse_size(text: str) -> int:
    """`1GiB`, `512MiB`, `2GB`, `1048576` -> bytes.

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB (and K/M/G/T) powers of 1024.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"invalid size {text!r}: use e.g. 1GiB, 512MiB, 2GB or a byte count")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


# --- arguments every benchmark receives ------------------------------------------------------


@dataclass
class BenchArgs:
    """What `python -m bench` passes to a benchmark's `run()`."""

    size: int | None = None  # None: the benchmark's DEFAULT_SIZE
    rounds: int = 5
    warmup: bool = True
    tmpdir: Path | None = None  # where scratch dirs (and the store) go; one filesystem
    keep: bool = False  # keep scratch dirs for inspection
    log: Callable[[str], object] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


# --- tool discovery --------------------------------------------------------------------------

INSTALL_HINTS = {
    "b3sum": "Debian/Ubuntu: `apt-get install b3sum`; elsewhere `cargo install b3sum`",
    "time": "GNU time, Debian/Ubuntu: `apt-get install time`",
    "dvc": "`pip install -e .[bench]` (or `pip install dvc`)",
    "git-annex": "Debian/Ubuntu: `apt-get install git-annex`",
    "git": "Debian/Ubuntu: `apt-get install git`",
    "vvstore": "`pip install -e .` from the repository root",
}


def find_tool(name: str) -> str | None:
    """A command's path: next to this Python first (its venv), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def gnu_time() -> str | None:
    """Path of GNU time (not the shell keyword), or None."""
    for cand in ("/usr/bin/time", shutil.which("time")):
        if cand and os.access(cand, os.X_OK):
            try:
                out = subprocess.run([cand, "--version"], capture_output=True, text=True,
                                     timeout=10)
            except OSError:
                continue
            if "GNU" in out.stdout + out.stderr:
                return cand
    return None


def tool_version(argv: Sequence[str]) -> str:
    """First non-empty line a `--version`-like command prints, or '?'."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


# --- scratch space ---------------------------------------------------------------------------


def rmtree_force(path: str | os.PathLike[str]) -> None:
    """Remove a tree even where tools made directories read-only (git-annex, DVC's cache)."""

    def onerror(func: Callable[..., object], p: str, _exc: object) -> None:
        parent = os.path.dirname(p)
        with contextlib.suppress(OSError):
            os.chmod(parent, stat.S_IRWXU)
        with contextlib.suppress(OSError):
            os.chmod(p, stat.S_IRWXU)
        func(p)

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onerror)
    else:
        shutil.rmtree(path, onerror=onerror)


@contextlib.contextmanager
def scratch_dir(args: BenchArgs, prefix: str) -> Iterator[Path]:
    """A fresh temp directory (in `--tmpdir` if given) removed afterwards unless `--keep`."""
    parent = args.tmpdir
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=f"vvstore-bench-{prefix}.", dir=parent))
    try:
        yield d
    finally:
        if args.keep:
            args.log(f"kept scratch dir {d}")
        else:
            rmtree_force(d)


def make_random_file(path: Path, size: int, chunk: int = 16 << 20) -> None:
    """`size` random bytes (incompressible, never deduplicated), fsynced."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def warm_file(path: Path, chunk: int = 8 << 20) -> None:
    """Read a file once so its pages are in the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        while f.readinto(buf):
            pass


def sync_all() -> None:
    """Flush every dirty page, so write-back of one command never lands in the next one's time."""
    os.sync()


def mem_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes (0 if unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def filesystem_of(path: Path) -> str:
    """`fstype (device)` of the mount holding `path`, from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "?"
    best, found = "", "?"
    p = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        dev, mnt, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
        if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, found = mnt, f"{fstype} ({dev})"
    return found


def machine_info(path: Path) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.0f} GiB RAM"
                break
    load = "?"
    with contextlib.suppress(OSError):
        load = f"{os.getloadavg()[0]:.2f}"
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 0
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{ncpu} cores ({cpu})",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "filesystem": f"scratch and store on {filesystem_of(path)}",
        "python": f"Python {platform.python_version()}",
        "load": f"1-minute load average {load} at the end",
    }


# --- running and timing commands -------------------------------------------------------------


class CommandFailed(RuntimeError):
    pass


def run_quiet(argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run an untimed helper command; raise with its output if it fails."""
    proc = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandFailed(f"`{shlex.join(argv)}` exited {proc.returncode}:\n"
                            f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


@dataclass
class Sample:
    seconds: float
    rss_kib: int | None


_RSS_RE = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")


def timed(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
          time_bin: str | None = None, rss_file: Path | None = None) -> Sample:
    """Wall time of one command (perf_counter around subprocess.run), and its peak RSS via GNU
    time when available. Output is discarded; a non-zero exit raises :class:`CommandFailed`."""
    full = list(argv)
    if time_bin and rss_file:
        full = [time_bin, "-v", "-o", str(rss_file), "--", *full]
    t0 = time.perf_counter()
    proc = subprocess.run(full, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise CommandFailed(f"`{shlex.join(argv)}` exited {proc.returncode}:\n"
                            f"{proc.stderr.decode(errors='replace').strip()[-2000:]}")
    rss = None
    if time_bin and rss_file:
        m = _RSS_RE.search(rss_file.read_text(errors="replace"))
        rss = int(m.group(1)) if m else None
    return Sample(seconds, rss)


@dataclass
class Case:
    """One command to time: `setup()` and `teardown()` run around every run, untimed."""

    name: str
    argv: list[str]
    setup: Callable[[], object] | None = None
    teardown: Callable[[], object] | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    optional: bool = False  # an anchor that may drop out (with a note) if it fails in warm-up
    display: str | None = None  # the command as shown in the report


def run_interleaved(cases: list[Case], rounds: int, args: BenchArgs, scratch: Path,
                    notes: list[str]) -> dict[str, list[Sample]]:
    """Warm-up round (untimed), then `rounds` rounds of A B C ...; every run is followed by its
    teardown and a `sync`, so no command pays for another's write-back."""
    time_bin = gnu_time()
    rss_file = scratch / "time-v.out"
    results: dict[str, list[Sample]] = {c.name: [] for c in cases}
    live = list(cases)

    def once(c: Case) -> Sample:
        if c.setup:
            c.setup()
        sync_all()
        try:
            return timed(c.argv, env=c.env, cwd=c.cwd, time_bin=time_bin, rss_file=rss_file)
        finally:
            if c.teardown:
                c.teardown()
            sync_all()

    if args.warmup:
        args.log("warm-up round (untimed)")
        for c in list(live):
            try:
                s = once(c)
                args.log(f"  {c.name:24s} {s.seconds:8.3f} s")
            except CommandFailed as e:
                if not c.optional:
                    raise
                live.remove(c)
                notes.append(f"{c.name}: failed in the warm-up round, left out: "
                             f"{str(e).splitlines()[-1][:200]}")
                args.log(f"  {c.name}: FAILED, left out\n{e}")
    for r in range(1, rounds + 1):
        args.log(f"round {r}/{rounds}")
        for c in live:
            s = once(c)
            results[c.name].append(s)
            rss = f"{s.rss_kib / 1024:7.1f} MiB" if s.rss_kib is not None else ""
            args.log(f"  {c.name:24s} {s.seconds:8.3f} s  {rss}")
    return {k: v for k, v in results.items() if v}


# --- results and reports ---------------------------------------------------------------------


@dataclass
class Row:
    """One measured command of a benchmark."""

    name: str
    command: str
    samples: list[Sample]
    work_bytes: int = 0  # bytes processed per run (for GB/s)
    role: str = "anchor"  # "subject" (vvstore) or "anchor"

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        times = [s.seconds for s in self.samples]
        return min(times), max(times)

    @property
    def rate_gbs(self) -> float | None:
        return self.work_bytes / 1e9 / self.median if self.work_bytes and self.median else None

    @property
    def rss_mib(self) -> float | None:
        rss = [s.rss_kib for s in self.samples if s.rss_kib is not None]
        return max(rss) / 1024 if rss else None


@dataclass
class Report:
    """A benchmark's result: rows, the anchors its ratios are against, notes, machine facts."""

    bench: str
    title: str
    rows: list[Row]
    ratio_to: list[tuple[str, str]] = field(default_factory=list)  # (column header, row name)
    notes: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def table(self) -> str:
        headers = ["what", "command", "median s", "min–max s", "GB/s"]
        headers += [h for h, _ in self.ratio_to] + ["peak RSS MiB"]
        body = []
        for r in self.rows:
            lo, hi = r.spread
            cells = [f"**{r.name}**" if r.role == "subject" else r.name, f"`{r.command}`",
                     f"{r.median:.3f}", f"{lo:.2f}–{hi:.2f}",
                     f"{r.rate_gbs:.2f}" if r.rate_gbs else "–"]
            for _, anchor in self.ratio_to:
                a = self.row(anchor)
                cells.append(f"{r.median / a.median:.2f}×" if a else "–")
            cells.append(f"{r.rss_mib:.1f}" if r.rss_mib is not None else "–")
            body.append(cells)
        return render_table(headers, body, right=range(2, len(headers)))

    def markdown(self) -> str:
        facts = ", ".join(self.info.values())
        parts = [f"### {self.title}", "", f"Measured {facts}.", "", self.table(), ""]
        if self.notes:
            parts += [f"- {n}" for n in self.notes] + [""]
        return "\n".join(parts)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Sequence[int] | range = ()) -> str:
    """A GitHub-flavoured markdown table, columns padded so it also reads well as text."""
    right = set(right)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w
                            for i, w in enumerate(widths)) + " |"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


# --- writing the report file -----------------------------------------------------------------

BEGIN = ("<!-- bench:{name}:begin (generated by `python -m bench {name} --out ...`; "
         "edits here are overwritten) -->")
END = "<!-- bench:{name}:end -->"


def write_report(path: Path, reports: list[Report]) -> None:
    """Put each report into `path` between its markers: replace the section if the file has it,
    else append it (a new file gets a title). Prose outside the markers is kept."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# vvstore benchmarks\n"
    for rep in reports:
        begin, end = BEGIN.format(name=rep.bench), END.format(name=rep.bench)
        section = f"{begin}\n{rep.markdown().rstrip()}\n{end}"
        pattern = re.compile(re.escape(begin.split(" (")[0]) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m, s=section: s, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


# --- additions for the fetch, verify, gc and fs benchmarks -----------------------------------

REPO = Path(__file__).resolve().parent.parent


def env_with(**extra: str) -> dict[str, str]:
    """This process's environment plus `extra` (for a child command)."""
    env = dict(os.environ)
    env.update(extra)
    return env


def import_test_servers() -> None:
    """Make `tests.servers` importable (the benchmarks reuse the tests' loopback servers)."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))  # after PYTHONPATH: a snapshot of cas/ there still wins


def git_state() -> str:
    """`vvstore at <short sha>` of the repository, `+ uncommitted changes` when cas/ or cli/ are
    dirty; when `cas` comes from elsewhere (a snapshot on PYTHONPATH), that directory and
    `$VVSTORE_BENCH_REV` if set."""
    import importlib.util

    spec = importlib.util.find_spec("cas")
    where = Path(spec.origin).resolve().parent.parent if spec and spec.origin else REPO
    if where != REPO:
        rev = os.environ.get("VVSTORE_BENCH_REV")
        return f"vvstore from {where}" + (f" ({rev})" if rev else "")
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "cas", "cli"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "git ?"
    return f"vvstore at {sha or '?'}" + (" + uncommitted changes in cas/ or cli/" if dirty else "")


@dataclass
class FnCase:
    """One in-process operation to time: `fn()` between an untimed `setup()` and `teardown()`.

    `repeat` calls of `fn` make one sample, whose time is the mean per call (for operations too
    short to time one at a time)."""

    name: str
    fn: Callable[[], object]
    setup: Callable[[], object] | None = None
    teardown: Callable[[], object] | None = None
    display: str | None = None
    repeat: int = 1


def run_interleaved_fn(cases: list[FnCase], rounds: int, args: BenchArgs,
                       samples_per_round: int = 1, unit: float = 1.0,
                       unit_name: str = "s") -> dict[str, list[Sample]]:
    """Like :func:`run_interleaved`, for in-process operations: a warm-up round (untimed), then
    `rounds` rounds, each of `samples_per_round` passes of A B C ... (one sample per case per
    pass)."""
    results: dict[str, list[Sample]] = {c.name: [] for c in cases}

    def once(c: FnCase) -> Sample:
        if c.setup:
            c.setup()
        try:
            t0 = time.perf_counter()
            for _ in range(c.repeat):
                c.fn()
            return Sample((time.perf_counter() - t0) / c.repeat, None)
        finally:
            if c.teardown:
                c.teardown()

    if args.warmup:
        args.log("warm-up round (untimed)")
        for c in cases:
            s = once(c)
            args.log(f"  {c.name:32s} {s.seconds * unit:10.3f} {unit_name}")
    for r in range(1, rounds + 1):
        args.log(f"round {r}/{rounds}")
        got: dict[str, list[Sample]] = {c.name: [] for c in cases}
        for _ in range(samples_per_round):  # A B C, A B C, ...: samples interleave too
            for c in cases:
                got[c.name].append(once(c))
        for c in cases:
            results[c.name].extend(got[c.name])
            med = statistics.median(s.seconds for s in got[c.name])
            args.log(f"  {c.name:32s} {med * unit:10.3f} {unit_name}")
    return results


_UNIT_SCALE = {"s": 1.0, "ms": 1e3, "µs": 1e6}


def _num(value: float, digits: int) -> str:
    """A table number: thousands separated and no decimals from 1,000 up."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.{digits}f}"


def ratio_text(value: float) -> str:
    """`1.07×`, `63×`, `53,661×`."""
    return f"{value:,.0f}×" if value >= 100 else f"{value:.2f}×"


@dataclass
class TableReport(Report):
    """A :class:`Report` with a choice of time unit, rate column and extra columns.

    `rate_header` names the rate column ("GB/s": `work_bytes` / 1e9 per second; "files/s" with
    `rate_divisor=1`: `work_bytes` counts files); an empty header drops the column.
    `extra` adds columns computed from each row. `show_rss` drops the RSS column when False.
    """

    unit: str = "s"
    rate_header: str = "GB/s"
    rate_divisor: float = 1e9
    extra: list[tuple[str, Callable[[Row], str]]] = field(default_factory=list)
    show_rss: bool = True
    heading: str = "###"

    def table(self) -> str:
        scale = _UNIT_SCALE[self.unit]
        digits = 3 if self.unit == "s" else 1
        spread = 2 if self.unit == "s" else 1
        headers = ["what", "command", f"median {self.unit}", f"min–max {self.unit}"]
        if self.rate_header:
            headers.append(self.rate_header)
        headers += [h for h, _ in self.ratio_to] + [h for h, _ in self.extra]
        if self.show_rss:
            headers.append("peak RSS MiB")
        body = []
        for r in self.rows:
            lo, hi = r.spread
            cells = [f"**{r.name}**" if r.role == "subject" else r.name, f"`{r.command}`",
                     _num(r.median * scale, digits), f"{_num(lo * scale, spread)}–"
                     f"{_num(hi * scale, spread)}"]
            if self.rate_header:
                rate = r.work_bytes / self.rate_divisor / r.median if r.work_bytes and r.median \
                    else None
                cells.append("–" if rate is None else
                              f"{rate:.2f}" if rate < 100 else f"{rate:,.0f}")
            for _, anchor in self.ratio_to:
                a = self.row(anchor)
                cells.append(ratio_text(r.median / a.median) if a and a.median else "–")
            cells += [fn(r) for _, fn in self.extra]
            if self.show_rss:
                cells.append(f"{r.rss_mib:.1f}" if r.rss_mib is not None else "–")
            body.append(cells)
        return render_table(headers, body, right=range(2, len(headers)))

    def markdown(self) -> str:
        parts = [f"{self.heading} {self.title}", ""]
        if self.info:
            parts += [f"Measured {', '.join(self.info.values())}.", ""]
        parts += [self.table(), ""]
        if self.notes:
            parts += [f"- {n}" for n in self.notes] + [""]
        return "\n".join(parts)


@dataclass
class ReportGroup:
    """Several tables under one benchmark's markers: one machine line, then each part."""

    bench: str
    title: str
    parts: list[Report]
    notes: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)

    def markdown(self) -> str:
        facts = ", ".join(self.info.values())
        out = [f"### {self.title}", "", f"Measured {facts}.", ""]
        if self.notes:
            out += [f"- {n}" for n in self.notes] + [""]
        for p in self.parts:
            if isinstance(p, TableReport):
                p.heading = "####"
                out.append(p.markdown())
            else:
                out.append(p.markdown().replace("### ", "#### ", 1))
        return "\n".join(out)


def verdict(what: str, value: float, target: float, *, at_most: bool, unit: str = "×") -> str:
    """`what: 1.07× (target ≤ 1.10×): met` / `MISSED`."""
    ok = value <= target if at_most else value >= target
    sign = "≤" if at_most else "≥"
    return f"{what}: {value:.2f}{unit} (target {sign} {target:g}{unit}): " + \
        ("**met**" if ok else "**MISSED**")


def median_of(samples: Sequence[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)
