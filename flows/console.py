"""What the CLI prints: third-party noise off, one progress display per stage, tables that fit any width.

A demo log is read after the fact, often in a file or a CI page: transformers' "Loading weights" /
"Writing model shards" bars and library FutureWarnings drown the project's own output there, and a rich
table rendered at a log's 80 columns is cut off. So, unless ``--verbose``:

- transformers' and huggingface_hub's progress bars and advisory logging are off, and FutureWarnings
  plus the known third-party warnings below are ignored (in this process, and through the environment
  in the processes it starts, e.g. torchrun ranks);
- each stage that reports progress gets one rich bar (on stderr; in a non-terminal log it prints once,
  finished, instead of redrawing);
- tables are rich tables that wrap their cells in a terminal, and Markdown when stdout is a pipe or
  file (complete rows at any width, and pasteable).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mnaft_core._base import ProgressFn

# (category, message regex, module regex) of warnings that say nothing to a user of this project.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, "", ""),
    (UserWarning, ".*TypedStorage is deprecated.*", ""),
    (UserWarning, ".*`do_sample` is set to `False`.*", ""),
    (UserWarning, ".*generation flags are not valid.*", ""),
    (DeprecationWarning, "", ""),
)
# The same for child processes (PYTHONWARNINGS takes no regex, so categories only).
CHILD_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
}

_state = {"verbose": False}


def setup_output(verbose: bool = False) -> None:
    """Silence third-party bars and known warnings (unless ``verbose``); hook the stage display in."""
    _state["verbose"] = verbose
    if not verbose:
        for name, value in CHILD_ENV.items():
            os.environ.setdefault(name, value)
        for category, message, module in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        if "transformers" in sys.modules:  # else the environment above is read when it is imported
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # also huggingface_hub's
            hf_logging.set_verbosity_error()
    from tasks import _stage

    _stage.set_progress_display(stage_display)


def is_verbose() -> bool:
    return _state["verbose"]


def err_console() -> Console:
    return Console(stderr=True)


@contextmanager
def stage_display(stage: str, what: str) -> Iterator[ProgressFn]:
    """One rich progress bar for a stage: redrawn in a terminal, printed once when done elsewhere."""
    console = err_console()
    progress = Progress(
        TextColumn("[bold]{task.fields[stage]}[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = progress.add_task(what, total=None, stage=stage)
    if not console.is_terminal:
        console.print(f"{stage}: {what} ...", highlight=False, soft_wrap=True)

    def report(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    if console.is_terminal:
        with progress:
            yield report
    else:
        yield report
        console.print(f"{stage}: {what} done", highlight=False, soft_wrap=True)


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], title: str = "", console: Console | None = None
) -> None:
    """A rich table (cells wrap, nothing cut) in a terminal; Markdown when stdout is not one."""
    console = console or Console()
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if not console.is_terminal:
        if title:
            print(f"\n{title}\n")
        print(markdown_table(columns, cells))
        sys.stdout.flush()
        return
    table = Table(title=title or None)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
