"""The `vvstore` click group: global options, one place that maps errors to exit codes."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from cas.errors import VVStoreError
from cas.manager import DefaultModelManager

from .render import note

log = logging.getLogger("vvstore")


class App:
    """Global options and the lazily built manager, shared by every command."""

    def __init__(
        self, store: str | None, project: str | None, json: bool, quiet: bool, verbose: int
    ):
        self.store_dir = store
        self.project = project
        self.json = json
        self.quiet = quiet
        self.verbose = verbose
        self._manager: DefaultModelManager | None = None

    @property
    def manager(self) -> DefaultModelManager:
        if self._manager is None:
            self._manager = DefaultModelManager(self.project, self.store_dir)
        return self._manager

    @property
    def show_progress(self) -> bool:
        return not (self.json or self.quiet) and sys.stderr.isatty()


class VVStoreGroup(click.Group):
    """Maps every known error to its exit code and a one-line message, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VVStoreError as e:
            _fail(ctx, f"error: {e}", e.exit_code)
        except BrokenPipeError:  # the reader went away (`vvstore cat m | head`): not our failure
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is silent
            ctx.exit(0)
        except FileNotFoundError as e:
            _fail(ctx, f"error: {e.filename or ''}: {e.strerror or e}", 4)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            _fail(ctx, f"error: {where}{e.strerror or e}", 1)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", 130)


def _fail(ctx: click.Context, message: str, code: int) -> None:
    app = ctx.find_object(App)
    if app is not None and app.verbose:
        traceback.print_exc()
    note(f"vvstore: {message}")
    ctx.exit(code)


def _setup_logging(quiet: bool, verbose: int) -> None:
    level = (
        logging.ERROR
        if quiet
        else logging.DEBUG
        if verbose > 1
        else logging.INFO
        if verbose
        else logging.WARNING
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vvstore: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


@click.group(cls=VVStoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vvstore")
@click.option(
    "--store", metavar="DIR", help="Store directory (default: $VVSTORE_HOME, else the user cache)."
)
@click.option(
    "-C", "project", metavar="DIR", help="Project directory (default: nearest vvstore.yaml upward)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (one JSON document on stdout)."
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr; tracebacks for errors.")
@click.pass_context
def cli(
    ctx: click.Context,
    store: str | None,
    project: str | None,
    as_json: bool,
    quiet: bool,
    verbose: int,
) -> None:
    """vvstore: a content-addressed store for AI model files.

    Exit codes: 0 ok, 1 other failure, 2 usage or invalid name, 3 invalid manifest or
    lockfile, 4 not found, 5 integrity failure, 6 source or remote failure, 7 lock timeout,
    8 unknown store format.
    """
    _setup_logging(quiet, verbose)
    if project is not None and not Path(project).is_dir():
        raise click.BadParameter(f"{project!r} is not a directory", param_hint="-C")
    ctx.obj = App(store or os.environ.get("VVSTORE_HOME") or None, project, as_json, quiet, verbose)


def _register() -> None:
    from . import cache, lock, models, project, read, transfer

    for module in (project, models, read, transfer, lock, cache):
        for command in module.COMMANDS:
            cli.add_command(command)


if __name__ != "__main__":  # under `python -m cli.main` the package module registers them
    _register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="vvstore")


if __name__ == "__main__":
    from cli.main import main as _main  # the package module, whose group has the commands

    _main()
