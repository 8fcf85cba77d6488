"""`vvstore path` and `vvstore cat`: read a model's bytes."""

from __future__ import annotations

import shutil

import click

from .main import App
from .render import emit_json, stdout_binary

pass_app = click.make_pass_decorator(App)


@click.command()
@click.argument("ref")
@pass_app
def path(app: App, ref: str) -> None:
    """Print the local path of REF's blob (REF: name[@version][/file] or blake3:<hex>[/file])."""
    p = app.manager.path(ref)
    if app.json:
        emit_json({"ref": ref, "path": str(p)})
    else:
        click.echo(str(p))


@click.command()
@click.argument("ref")
@pass_app
def cat(app: App, ref: str) -> None:
    """Write REF's bytes to stdout."""
    with app.manager.open(ref) as f:
        out = stdout_binary()
        shutil.copyfileobj(f, out, 1 << 20)
        out.flush()


COMMANDS = [path, cat]
