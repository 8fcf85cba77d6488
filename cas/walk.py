"""Walking a local directory into (relative path, file) pairs, refusing unsafe names."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .names import validate_relpath

log = logging.getLogger("vvstore")


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file below `root`, sorted, with its validated `/`-separated relative path.

    File symlinks are followed (a Hugging Face snapshot is made of them); directory symlinks
    are skipped with a warning, so a link loop cannot trap the walk.
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                log.warning("skipping directory symlink %s", here / d)
                dirnames.remove(d)
        dirnames.sort()
        for fname in sorted(filenames):
            path = here / fname
            if not path.is_file():
                log.warning("skipping %s: not a regular file", path)
                continue
            rel = path.relative_to(root).as_posix()
            yield validate_relpath(rel), path
