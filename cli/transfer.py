"""`vvstore fetch`: make every wanted model present and verified."""

from __future__ import annotations

import click

from .main import App
from .progress import byte_progress, file_bars
from .render import emit_json, human_size, note

pass_app = click.make_pass_decorator(App)


@click.command()
@click.argument("refs", nargs=-1)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=256),
    default=None,
    help="Parallel transfers (default: sized for this machine).",
)
@click.option(
    "--locked",
    is_flag=True,
    help="Fetch exactly the lockfile's digests; refuse (exit 3) if the manifest drifted.",
)
@pass_app
def fetch(app: App, refs: tuple[str, ...], jobs: int | None, locked: bool) -> None:
    """Fetch the models named by REFS (default: all), verifying every byte."""
    m = app.manager
    total = sum(e.size or 0 for e in m.select(refs) if not m.is_present(e))
    bars = file_bars(app)
    with byte_progress(app, total, "fetching") as progress:
        if locked:
            report = m.fetch_locked(refs, jobs=jobs, progress=progress, file_progress=bars)
        else:
            report = m.fetch(refs, jobs=jobs, progress=progress, file_progress=bars)
    if app.json:
        emit_json(
            {
                "fetched": [
                    {
                        "ref": ref,
                        "digest": str(r.digest),
                        "size": r.size,
                        "source": r.source,
                        "resumed_from": r.resumed_from,
                    }
                    for ref, r in report.fetched
                ],
                "present": report.present,
                "errors": [
                    {"ref": ref, "error": str(e), "exit_code": e.exit_code}
                    for ref, e in report.errors
                ],
            }
        )
    elif not app.quiet:
        for ref, r in report.fetched:
            note(f"fetched {ref} ({human_size(r.size)}){' resumed' if r.resumed_from else ''}")
        note(
            f"{len(report.fetched)} fetched ({human_size(report.bytes)}), "
            f"{len(report.present)} already present"
            + (f", {len(report.errors)} failed" if report.errors else "")
        )
    if report.errors:
        for ref, e in report.errors:
            note(f"vvstore: error: {ref}: {e}")
        click.get_current_context().exit(report.errors[0][1].exit_code)


COMMANDS = [fetch]
