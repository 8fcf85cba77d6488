"""`vvstore gc`, `pin`, `unpin`, `du`: the shared store's space."""

from __future__ import annotations

import click

from cas.units import format_size

from .main import App
from .render import emit_json, note, table

pass_app = click.make_pass_decorator(App)


@click.command()
@click.option(
    "--max-size", metavar="SIZE", help="Cap the store's size (e.g. 50GB, 500MiB); LRU eviction."
)
@click.option(
    "--ttl", metavar="AGE", help="Collect unreferenced blobs unused for longer (e.g. 30d)."
)
@click.option("--grace", metavar="AGE", help="Never collect blobs used more recently (default 1d).")
@click.option("--dry-run", is_flag=True, help="Say what would go and why; change nothing.")
@click.option("--allow-missing", is_flag=True, help="Go on when a referenced blob is missing.")
@pass_app
def gc(
    app: App,
    max_size: str | None,
    ttl: str | None,
    grace: str | None,
    dry_run: bool,
    allow_missing: bool,
) -> None:
    """Collect blobs no registered project references (never a referenced or pinned one)."""
    report = app.manager.gc(
        max_size=max_size, ttl=ttl, grace=grace, dry_run=dry_run, allow_missing=allow_missing
    )
    if app.json:
        emit_json(report.to_dict())
        return
    if app.quiet:
        return
    for v in report.plan.delete:
        gone = dry_run or v in report.deleted
        click.echo(
            f"{'would delete' if dry_run else 'deleted' if gone else 'kept (in use)'} "
            f"{v.describe()}"
        )
    for root in report.dropped_roots:
        note(f"{'would drop' if dry_run else 'dropped'} root {root} (its lockfile is gone)")
    note(report.plan.summary())
    if not dry_run:
        note(
            f"freed {format_size(report.freed)}"
            + (
                f"; {len(report.kept_in_use)} kept because they were used meanwhile"
                if report.kept_in_use
                else ""
            )
            + (f"; {report.tmp_cleaned} stale temp files removed" if report.tmp_cleaned else "")
        )


@click.command()
@click.argument("ref")
@pass_app
def pin(app: App, ref: str) -> None:
    """Keep REF's blobs (a model, or blake3:<hex>) whatever the gc policy says."""
    new = app.manager.pin(ref)
    if app.json:
        emit_json({"ref": ref, "pinned": [str(d) for d in new]})
    elif not app.quiet:
        note(f"pinned {ref}: {len(new)} new blob pin{'s' if len(new) != 1 else ''}")


@click.command()
@click.argument("ref")
@pass_app
def unpin(app: App, ref: str) -> None:
    """Let gc collect REF's blobs again by policy."""
    gone = app.manager.unpin(ref)
    if app.json:
        emit_json({"ref": ref, "unpinned": [str(d) for d in gone]})
    elif not app.quiet:
        note(f"unpinned {ref}: {len(gone)} blob pin{'s' if len(gone) != 1 else ''} removed")


@click.command()
@pass_app
def du(app: App) -> None:
    """Space used: by model, referenced vs unreferenced vs pinned, dedup savings, partials."""
    from cas.cache import ModelCacheManager

    usage = ModelCacheManager(app.manager.store).usage()
    if app.json:
        emit_json(usage)
        return
    table(
        [
            (m["ref"], format_size(m["bytes"]), "yes" if m["present"] else "no", m["project"])
            for m in usage["models"]
        ],
        ("MODEL", "SIZE", "PRESENT", "PROJECT"),
    )
    click.echo(
        f"\nstore {usage['store']}: {usage['blobs']} blobs, {format_size(usage['total_bytes'])}"
    )
    for key in ("referenced", "unreferenced", "pinned", "dedup_saved", "partial"):
        click.echo(f"  {key.replace('_', ' ')}: {format_size(usage[key + '_bytes'])}")


COMMANDS = [gc, pin, unpin, du]
