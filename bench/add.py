"""add: store one large file; beside it `cp`, `cp` + fsync, `b3sum`, `dvc add`, `git annex add`.

`vvstore add FILE` must read, hash (BLAKE3) and durably write every byte: its floor is a durable
copy (`cp` + fsync of the copy) and, for the hashing, `b3sum`. Each round gets a fresh store and
fresh DVC / git-annex repositories (made and removed outside the timed region); after every
command its output is removed and `sync` runs, so no command pays for another one's write-back.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from .common import (
    INSTALL_HINTS,
    BenchArgs,
    Case,
    Report,
    Row,
    find_tool,
    gnu_time,
    human_bytes,
    machine_info,
    make_random_file,
    rmtree_force,
    run_interleaved,
    run_quiet,
    scratch_dir,
    tool_version,
    warm_file,
)

SUMMARY = "store one large random file: vvstore add vs cp, cp+fsync, b3sum, dvc add, git annex add"
DEFAULT_SIZE = 1 << 30  # 1 GiB

VVSTORE = "vvstore add"
CP = "cp"
CP_SYNC = "cp + fsync"
B3SUM = "b3sum"
B3SUM_1 = "b3sum (1 thread)"
DVC = "dvc add"
ANNEX = "git annex add"
LOOP = "py loop (design)"
CFR = "py cfr+thread (design)"
REPO = Path(__file__).resolve().parent.parent
RSS_GOAL_MIB = 150


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run(args: BenchArgs) -> Report:
    size = args.size or DEFAULT_SIZE
    notes: list[str] = []
    missing: list[str] = []

    vvstore = find_tool("vvstore")
    if vvstore is None:
        raise SystemExit(f"vvstore not found: {INSTALL_HINTS['vvstore']}")

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with scratch_dir(args, "add") as d:
        src = d / "model.bin"
        args.log(f"writing {human_bytes(size)} of random bytes to {src}")
        make_random_file(src, size)
        warm_file(src)

        store, project, dst = d / "store", d / "project", d / "copy.bin"
        vv_env = _env(VVSTORE_HOME=str(store))

        def vv_setup() -> None:
            rmtree_force(store)
            rmtree_force(project)
            project.mkdir()
            run_quiet([vvstore, "-q", "-C", str(project), "init"], env=vv_env)

        def vv_teardown() -> None:
            rmtree_force(store)
            rmtree_force(project)

        def rm_dst() -> None:
            dst.unlink(missing_ok=True)

        cases = [
            Case(VVSTORE, [vvstore, "-q", "-C", str(project), "add", str(src)],
                 setup=vv_setup, teardown=vv_teardown, env=vv_env,
                 display="vvstore add FILE"),
            Case(CP, ["cp", str(src), str(dst)], teardown=rm_dst, display="cp FILE dst"),
            Case(CP_SYNC, ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", str(src), str(dst)],
                 teardown=rm_dst, display="cp FILE dst && sync dst"),
        ]
        py_env = _env(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                               os.environ.get("PYTHONPATH")])))
        for name, mode in ((LOOP, "loop"), (CFR, "cfr")):
            cases.append(Case(name, [sys.executable, "-m", "bench._designs", mode, str(src),
                                     str(dst)], teardown=rm_dst, env=py_env, optional=True,
                              display=f"python -m bench._designs {mode} FILE dst"))

        b3sum = find_tool("b3sum")
        if b3sum:
            cases.append(Case(B3SUM, [b3sum, str(src)], display="b3sum FILE"))
            cases.append(Case(B3SUM_1, [b3sum, "--num-threads", "1", str(src)],
                              display="b3sum --num-threads 1 FILE"))
        else:
            missing.append(f"`b3sum` not on PATH: its rows are skipped ({INSTALL_HINTS['b3sum']})")

        dvc = find_tool("dvc")
        if dvc:
            dvc_repo = d / "dvc-repo"
            dvc_env = _env(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(d / "dvc-site-cache"))

            def dvc_setup() -> None:
                rmtree_force(dvc_repo)
                dvc_repo.mkdir()
                run_quiet([dvc, "init", "--no-scm", "-q"], env=dvc_env, cwd=dvc_repo)
                run_quiet(["cp", str(src), str(dvc_repo / "model.bin")])

            cases.append(Case(DVC, [dvc, "add", "-q", "model.bin"], setup=dvc_setup,
                              teardown=lambda: rmtree_force(dvc_repo), env=dvc_env,
                              cwd=dvc_repo, optional=True, display="dvc add FILE"))
        else:
            missing.append(f"`dvc` not found: its row is skipped ({INSTALL_HINTS['dvc']})")

        git, annex = find_tool("git"), find_tool("git-annex")
        if git and annex:
            annex_repo = d / "annex-repo"
            git_env = _env(GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
                           GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost",
                           GIT_CONFIG_NOSYSTEM="1", HOME=str(d))

            def annex_setup() -> None:
                rmtree_force(annex_repo)
                annex_repo.mkdir()
                run_quiet([git, "init", "-q"], env=git_env, cwd=annex_repo)
                run_quiet([git, "annex", "init", "-q", "bench"], env=git_env, cwd=annex_repo)
                run_quiet(["cp", str(src), str(annex_repo / "model.bin")])

            cases.append(Case(ANNEX, [git, "annex", "add", "-q", "model.bin"], setup=annex_setup,
                              teardown=lambda: rmtree_force(annex_repo), env=git_env,
                              cwd=annex_repo, optional=True, display="git annex add FILE"))
        else:
            hint = INSTALL_HINTS["git-annex"]
            missing.append(f"`git-annex` not found: its row is skipped ({hint})")

        for m in missing:
            args.log(f"note: {m}")
        samples = run_interleaved(cases, args.rounds, args, d, notes)
        info = machine_info(d)
    if load_start is not None:
        info["load"] = f"1-minute load average {load_start:.2f} at the start, " + \
            info["load"].removeprefix("1-minute load average ")

    rows = [Row(c.name, c.display or shlex.join(c.argv), samples[c.name], size,
                "subject" if c.name == VVSTORE else "anchor")
            for c in cases if c.name in samples]
    versions = {"vvstore": tool_version([vvstore, "--version"])}
    if b3sum:
        versions["b3sum"] = tool_version([b3sum, "--version"])
    if dvc and DVC in samples:
        versions["dvc"] = "dvc " + tool_version([dvc, "--version"])
    if git and annex and ANNEX in samples:
        versions["git-annex"] = tool_version([git, "annex", "version", "--raw"])
        versions["git-annex"] = "git-annex " + versions["git-annex"]
    info["tools"] = "; ".join(versions.values())

    report = Report(
        bench="add",
        title=f"add: one {human_bytes(size)} file of random bytes",
        rows=rows,
        ratio_to=[("× cp+fsync", CP_SYNC), ("× b3sum", B3SUM)],
        info=info,
    )
    rep_notes = [
        f"{args.rounds} round{'s' if args.rounds != 1 else ''}, interleaved in the order of "
        f"the table{' after an untimed warm-up round' if args.warmup else ''}; medians. The "
        "page cache is warm: the source file was just written and read, and caches cannot be "
        "dropped reliably here.",
        "Every command's output is deleted and `sync` runs after it, outside the timed region; "
        "vvstore gets a fresh store, DVC and git-annex fresh repositories, each round "
        "(`vvstore init`, `dvc init --no-scm`, `git init && git annex init`, also untimed).",
        "The two *design* rows are not tools but yardsticks from REFERENCE.md, in "
        "`bench/_designs.py`: `loop` reads 1 MiB, hashes, writes, fsyncs at the end; `cfr` "
        "copies with `copy_file_range` in 64 MiB steps while a second thread hashes each "
        "copied range, with `fdatasync` every 256 MiB. They show what a durable copy that "
        "also hashes costs here, in Python, with interpreter start-up.",
        "Times include process start-up. GB/s is 10⁹ bytes per second. Ratios are to the same "
        "run's medians: these machines move ±15% between runs, so compare ratios.",
    ]
    rep_notes.append("Peak RSS of commands that memory-map the input (`b3sum`, the `cfr` "
                     "design) counts the mapped file's page-cache pages: about the file size, "
                     "not heap.")
    vv = report.row(VVSTORE)
    if vv and vv.rss_mib is not None:
        verdict = "within" if vv.rss_mib < RSS_GOAL_MIB else "OVER"
        rep_notes.append(f"Peak RSS (GNU time `-v`, the largest over the rounds) of vvstore add: "
                         f"{vv.rss_mib:.1f} MiB, {verdict} the goal of {RSS_GOAL_MIB} MiB.")
    elif gnu_time() is None:
        rep_notes.append(f"GNU time not found, so no peak RSS ({INSTALL_HINTS['time']}).")
    report.notes = rep_notes + notes + missing
    return report
