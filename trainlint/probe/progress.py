"""A progress line on stderr while overfitting, shown only when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

StepCallback = Callable[[int, float], None]


@contextlib.contextmanager
def step_progress(label: str, total: int) -> Iterator[StepCallback | None]:
    """Yield ``on_step(step, loss)`` driving a transient progress bar, or None off a terminal.

    Logs, CI output and ``--format json`` pipes stay clean because nothing is drawn there.
    """
    if not sys.stderr.isatty():
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total, loss="…")

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step + 1, loss=f"{loss:.4g}")

        yield on_step
