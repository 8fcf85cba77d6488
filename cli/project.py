"""`vvstore init` and `vvstore log`."""

from __future__ import annotations

import click

from .main import App
from .render import emit_json, note

pass_app = click.make_pass_decorator(App)


@click.command()
@pass_app
def init(app: App) -> None:
    """Create vvstore.yaml here (or in -C DIR) and register the project with the store."""
    path, created = app.manager.init()
    if app.json:
        emit_json({"manifest": str(path), "created": created, "store": str(app.manager.store.root)})
    elif not app.quiet:
        note(
            f"{'created' if created else 'already initialised:'} {path} "
            f"(store {app.manager.store.root})"
        )


@click.command("log")
@click.option(
    "-n", "limit", type=click.IntRange(min=1), default=None, help="Only the last N entries."
)
@pass_app
def log_(app: App, limit: int | None) -> None:
    """Show the store's audit log, oldest first."""
    entries = list(app.manager.store.audit.entries())
    if limit:
        entries = entries[-limit:]
    if app.json:
        emit_json(entries)
        return
    for e in entries:
        fields = " ".join(
            f"{k}={v}"
            for k, v in e.items()
            if k not in ("time", "user", "host", "action", "outcome")
        )
        click.echo(
            f"{e.get('time', '?')} {e.get('user', '?')}@{e.get('host', '?')} "
            f"{e.get('action', '?')} {e.get('outcome', '')} {fields}".rstrip()
        )


COMMANDS = [init, log_]
