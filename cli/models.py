"""`vvstore add`, `ls`, `show`, `search`, `rm`: the project's models."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cas.blobs import LINK_MODES
from cas.manifest import ModelEntry

from .main import App
from .progress import byte_progress
from .render import emit_json, human_size, note, table

pass_app = click.make_pass_decorator(App)


def _entry_json(entry: ModelEntry, present: bool | None = None) -> dict[str, object]:
    import msgspec

    doc = {"ref": entry.ref, **msgspec.to_builtins(entry)}
    if present is not None:
        doc["present"] = present
    return doc


def _input_size(paths: tuple[str, ...]) -> int:
    total = 0
    for p in paths:
        if os.path.isdir(p):
            total += sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file())
        elif os.path.isfile(p):
            total += os.path.getsize(p)
    return total


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--name", help="Model name (default: the file's stem or the directory's name).")
@click.option("--version", "version", help="Model version (default: 1).")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for more.")
@click.option("--format", "fmt", help="Model format (default: guessed from file names).")
@click.option(
    "--link",
    type=click.Choice(LINK_MODES),
    default="copy",
    show_default=True,
    help="How bytes enter the store. hardlink makes your file read-only and shares it.",
)
@pass_app
def add(
    app: App,
    paths: tuple[str, ...],
    name: str | None,
    version: str | None,
    tags: tuple[str, ...],
    fmt: str | None,
    link: str,
) -> None:
    """Store files or directories (as trees) and record them in the manifest."""
    with byte_progress(app, _input_size(paths), "hashing") as progress:
        results = app.manager.add(
            list(paths),
            name=name,
            version=version,
            tags=tags,
            link=link,
            format=fmt,
            progress=progress,
        )  # type: ignore[arg-type]
    if app.json:
        emit_json(
            [
                _entry_json(r.entry) | {"files": r.files, "new_blobs": r.new_blobs, "link": r.link}
                for r in results
            ]
        )
    elif not app.quiet:
        for r in results:
            note(
                f"added {r.entry.ref}: {r.entry.digest} ({human_size(r.entry.size)}, "
                f"{r.files} file{'s' if r.files != 1 else ''}, "
                f"{r.new_blobs} new blob{'s' if r.new_blobs != 1 else ''})"
            )


@click.command("ls")
@click.option("--partial", is_flag=True, help="List partial downloads that a fetch will resume.")
@pass_app
def ls(app: App, partial: bool) -> None:
    """List the project's models and whether their bytes are in the store."""
    m = app.manager
    if partial:
        states = m.partials()
        if app.json:
            emit_json(states)
        else:
            table(
                [
                    (
                        s["what"],
                        s["source"],
                        f"{human_size(s['bytes'])} / {human_size(s['size'])}",
                        s["mode"],
                    )
                    for s in states
                ],
                ("WHAT", "SOURCE", "RECEIVED", "MODE"),
            )
        return
    rows = [(e, m.is_present(e)) for e in m.list_models()]
    if app.json:
        emit_json([_entry_json(e, present) for e, present in rows])
        return
    table(
        [
            (
                e.name,
                e.version,
                e.format or "-",
                e.kind,
                human_size(e.size),
                (e.digest or "-")[:19],
                "yes" if p else "no",
            )
            for e, p in rows
        ],
        ("NAME", "VERSION", "FORMAT", "KIND", "SIZE", "DIGEST", "PRESENT"),
    )


@click.command()
@click.argument("ref")
@pass_app
def show(app: App, ref: str) -> None:
    """Describe a model (REF: name[@version]) or a blob (blake3:<hex>)."""
    info = app.manager.show(ref)
    if app.json:
        emit_json(info)
        return
    for key, value in info.items():
        if key == "files":
            click.echo("files:")
            for f in value:
                click.echo(f"  {f['path']}  {human_size(f['size'])}  {f['digest']}")
        elif isinstance(value, list):
            click.echo(f"{key}: {', '.join(map(str, value)) or '-'}")
        else:
            click.echo(f"{key}: {value}")


@click.command()
@click.argument("query", default="")
@click.option(
    "--tag", "tags", multiple=True, help="Only models with this tag; repeat for all of several."
)
@click.option("--format", "fmt", help="Only models of this format.")
@pass_app
def search(app: App, query: str, tags: tuple[str, ...], fmt: str | None) -> None:
    """Find models whose name, version, description or tags contain QUERY."""
    found = app.manager.manifest.search(query, tags=tags, format=fmt)
    if app.json:
        emit_json([_entry_json(e) for e in found])
        return
    table(
        [(e.name, e.version, e.format or "-", ",".join(e.tags) or "-") for e in found],
        ("NAME", "VERSION", "FORMAT", "TAGS"),
    )


@click.command()
@click.argument("ref")
@pass_app
def rm(app: App, ref: str) -> None:
    """Drop a model (name, or name@version) from the manifest; its bytes are left to gc."""
    gone = app.manager.remove(ref)
    if app.json:
        emit_json([_entry_json(e) for e in gone])
    elif not app.quiet:
        for e in gone:
            note(f"removed {e.ref}")


COMMANDS = [add, ls, show, search, rm]
