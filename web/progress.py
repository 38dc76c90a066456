"""A progress bar for the long CLI checks, drawn with rich when it is installed (a dev
dependency, not a production one) and the terminal can show it; otherwise nothing."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Update = Callable[[int, int], None]  # (done, in all)


@contextmanager
def progress_bar(description: str, *, stream: TextIO | None = None) -> Iterator[Update | None]:
    """Yield a (done, total) callback drawing a bar on ``stream`` (stderr, so the command's
    stdout stays plain), or None when rich is missing or the stream is not a terminal."""
    out = stream or sys.stderr
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        yield None
        return
    if not out.isatty():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(file=out), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
