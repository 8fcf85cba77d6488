"""Progress bars on stderr, only for people at a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cas.download import FileProgress

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


def file_bars(app: App) -> FileProgress | None:
    """A bar per large file while it transfers (beneath the total's), or None when bars are
    off; small files get none, so a thousand small ones do not scroll the terminal."""
    if not app.show_progress:
        return None

    @contextmanager
    def one(what: str, size: int, done: int) -> Iterator[Callable[[int], object] | None]:
        if size < LARGE:
            yield None
            return
        from tqdm import tqdm

        with tqdm(
            total=size,
            initial=done,
            desc=what,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=False,
        ) as bar:
            yield bar.update

    return one
