"""vvstore's benchmarks: vvstore side by side with its anchors, in one run, reported as ratios.

Run them with `nox -s bench` or `python -m bench [NAME ...]`; `python -m bench --list` names
them. Each benchmark is a module here exposing `SUMMARY`, optionally `DEFAULT_SIZE`, and
`run(args: BenchArgs) -> Report` (see `bench.common`); a new module is picked up by itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

NOT_BENCHMARKS = {"common"}


def available() -> dict[str, ModuleType]:
    """Every benchmark module in this package, by name, in alphabetical order."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in NOT_BENCHMARKS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module
    return found
