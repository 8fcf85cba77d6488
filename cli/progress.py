"""Progress bars on stderr, only for people at a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .main import App

LARGE = 64 << 20  # below this, a bar would only flicker


@contextmanager
def byte_progress(app: App, total: int, desc: str) -> Iterator[Callable[[int], object] | None]:
    """A bytes bar (tqdm) when stderr is a terminal and the work is large, else None."""
    if not app.show_progress or total < LARGE:
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False
    ) as bar:
        yield bar.update
