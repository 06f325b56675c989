"""One line per failure: how the CLI turns any exception into what a user reads, and its exit code.

Every command runs inside ``ErrorLines.invoke``. The project's errors already name the file, key,
artifact or config field at fault, so their message is the line; known third-party failures (image
decoding and size limits, model loading, store access, paths) get a line that names what was being
read. A traceback is printed only with ``mnaft --debug`` (or ``MNAFT_DEBUG=1``): without it, Prefect's
log lines about a failed task or flow run keep their message (they name the run) but not the traceback
on the console; the run logs in the UI keep it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer
from rich.console import Console
from typer import _click
from typer.core import TyperGroup

DEBUG_ENV = "MNAFT_DEBUG"
_PROJECT = ("mnaft_core.", "storage.", "tasks.", "flows.")
_STORE_ACCESS = ("botocore.", "aiobotocore.", "s3fs.", "fsspec.", "aiohttp.")


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _is(err: BaseException, module_prefixes: tuple[str, ...]) -> bool:
    return any(c.__module__.startswith(module_prefixes) for c in type(err).__mro__)


def describe(err: BaseException) -> tuple[str, int]:
    """The line for ``err`` and the exit code (2 for bad configuration or arguments, 1 otherwise)."""
    name = type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (a rerun resumes: finished work is kept in the store)", 130
    if name == "ConfigError" or name == "UsageError":
        return str(err), 2
    if _is(err, _PROJECT):
        return str(err), 1
    if name == "DecompressionBombError":  # PIL: an image over its pixel limit
        return f"image too large to decode safely: {_first_line(str(err))}", 1
    if name == "UnidentifiedImageError":
        return f"cannot read image: {_first_line(str(err))}", 1
    if _is(err, _STORE_ACCESS):
        return f"store access failed ({name}): {_first_line(str(err))}; check --store / MNAFT_STORE", 1
    if isinstance(err, OSError) and err.filename is not None:
        what = err.strerror or _first_line(str(err))
        return f"{err.filename}: {what}", 1
    if name == "ValidationError":  # pydantic, outside a config file
        return f"invalid value: {_first_line(str(err))}", 2
    line = _first_line(str(err))
    return f"unexpected {name}{': ' + line if line else ''} (run `mnaft --debug ...` for the traceback)", 1


def debug_enabled(ctx: _click.Context | None = None) -> bool:
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        return True
    return bool(ctx is not None and ctx.find_root().meta.get("mnaft.debug"))


FLOW_COMMANDS = frozenset({"data", "run", "bootstrap", "profile", "select", "finetune", "evaluate"})


class _NoTraceback(logging.Filter):
    """Keeps a record's message, drops its traceback: for console handlers only."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_console_tracebacks() -> None:
    """Prefect's console handler (on the root logger) prints a failed run's traceback; filter it.

    The API handler of Prefect's run loggers sees a record before the root's handlers do, so the UI's
    run logs keep the traceback.
    """
    import prefect.main  # noqa: F401 -- sets up Prefect's logging handlers, which a flow command needs anyway

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not any(
            isinstance(f, _NoTraceback) for f in handler.filters
        ):
            handler.addFilter(_NoTraceback())


class ErrorLines(TyperGroup):
    """A command group whose commands fail with one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: _click.Context) -> Any:
        command = getattr(ctx, "_protected_args", [])[:1]
        if command and command[0] in FLOW_COMMANDS and not (ctx.params.get("debug") or debug_enabled()):
            quiet_console_tracebacks()
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors: already one line
        except (Exception, KeyboardInterrupt) as err:
            if debug_enabled(ctx):
                raise
            line, code = describe(err)
            Console(stderr=True).print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            sys.stderr.flush()
            raise typer.Exit(code) from err
