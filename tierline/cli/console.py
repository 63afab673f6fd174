"""Where the command line writes: results to standard output, messages and progress to
standard error. Shared by every command module, so none imports the command line itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def progress() -> Progress:
    """A transient progress bar on standard error."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
        "{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=err, transient=True)
