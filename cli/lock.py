"""`vvstore lock` and `vvstore verify`: pin exact digests, and check the store against them."""

from __future__ import annotations

import click

from .main import App
from .progress import byte_progress
from .render import emit_json, human_size, note

pass_app = click.make_pass_decorator(App)


@click.command()
@click.option("--check", is_flag=True, help="Only compare manifest and lockfile: exit 1 on drift.")
@pass_app
def lock(app: App, check: bool) -> None:
    """Resolve the manifest into vvstore.lock (fetching what must be hashed)."""
    m = app.manager
    drifts, report = m.lock(check=check)
    if app.json:
        emit_json(
            {
                "in_sync": not drifts,
                "drift": [str(d) for d in drifts],
                "lockfile": str(m.lockfile_path),
                "checked_only": check,
            }
        )
    elif check:
        note("in sync" if not drifts else f"{m.lockfile_path} is out of date:")
        for d in drifts:
            click.echo(str(d))
    elif not app.quiet:
        fetched = len(report.fetched) if report else 0
        note(
            f"locked {len(m.list_models())} models in {m.lockfile_path}"
            + (f" ({len(drifts)} changed)" if drifts else " (no change)")
            + (f"; fetched {fetched} files to hash them" if fetched else "")
        )
    if check and drifts:
        click.get_current_context().exit(1)


@click.command()
@click.argument("refs", nargs=-1)
@click.option(
    "--repair", is_flag=True, help="Fetch again every referenced blob that is bad or missing."
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1, max=256), default=None, help="Parallel hashing."
)
@pass_app
def verify(app: App, refs: tuple[str, ...], repair: bool, jobs: int | None) -> None:
    """Re-hash blobs (all, or those of REFS); quarantine any whose bytes do not match."""
    m = app.manager
    total = sum(b.size for b in m.store.iter_blobs()) if app.show_progress else 0
    with byte_progress(app, total, "verifying") as progress:
        outcome = m.verify(refs, repair=repair, jobs=jobs, progress=progress)
    r = outcome.report
    if app.json:
        emit_json(
            {
                "checked": r.checked,
                "bytes": r.bytes,
                "bad": [{"digest": str(d), "actual": str(a)} for d, a in r.bad],
                "missing": [str(d) for d in r.missing],
                "repaired": outcome.repaired,
                "errors": [{"ref": ref, "error": str(e)} for ref, e in outcome.errors],
                "ok": outcome.ok,
            }
        )
    elif not app.quiet:
        for d, actual in r.bad:
            note(f"bad: {d} (content hashes to {actual.short}); moved to quarantine/")
        for d in r.missing:
            note(f"missing: {d}")
        note(
            f"checked {r.checked} blobs ({human_size(r.bytes)}): {len(r.bad)} bad, "
            f"{len(r.missing)} missing, {len(outcome.repaired)} repaired"
        )
    for ref, e in outcome.errors:
        note(f"vvstore: error: {ref}: {e}")
    if not outcome.ok:
        code = outcome.errors[0][1].exit_code if outcome.errors else 5 if r.bad else 4
        click.get_current_context().exit(code)


COMMANDS = [lock, verify]
