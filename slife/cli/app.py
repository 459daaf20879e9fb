"""The typer app, its error policy, logging set-up and progress bars: shared by every command module.

Commands live one module per stage (`cli/synth.py`, `cli/lives.py`, `cli/mine.py`, `cli/train.py`,
`cli/evaluate.py`, `cli/demo.py`); each is a thin wrapper that builds a config from options, calls
the stage's entry function and prints the result. Only this package parses arguments, installs log
handlers and draws progress; library code logs through `logging.getLogger(__name__)` and reports
progress through a callback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import typer

from slife.errors import SlifeError

STATE = {"debug": bool(os.environ.get("SLIFE_DEBUG"))}


class _App(typer.Typer):
    """A Typer whose commands turn errors into one line on stderr (exit 2) unless --debug."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(fn):
            @functools.wraps(fn)
            def wrapped(*a, **kw):
                try:
                    return fn(*a, **kw)
                except (typer.Exit, typer.Abort, SystemExit):
                    raise
                except KeyboardInterrupt:
                    if STATE["debug"]:
                        raise
                    typer.echo("interrupted", err=True)
                    raise typer.Exit(130)
                except SlifeError as e:
                    if STATE["debug"]:
                        raise
                    typer.echo(f"error: {e}", err=True)
                    raise typer.Exit(2)
                except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
                    if STATE["debug"]:
                        raise
                    typer.echo(f"error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "), err=True)
                    raise typer.Exit(2)
                except Exception as e:  # a bug: still one line, with the way to the traceback
                    if STATE["debug"]:
                        raise
                    typer.echo(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
                    raise typer.Exit(1)

            return register(wrapped)

        return decorator


app = _App(
    name="slife",
    help=(
        "Single-life learning: mine view pairs from one person's egocentric video, train CroCo on them "
        "as a stream, and measure what the encoder learned."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v: debug). Info is shown by default."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
):
    STATE["debug"] = debug or STATE["debug"]
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 1 else logging.INFO)
    setup_logging(level)


def setup_logging(level: int = logging.INFO) -> None:
    """Send slife's log records to stderr through rich (only rank 0 under torchrun logs info)."""
    from rich.logging import RichHandler

    if int(os.environ.get("RANK", "0")) != 0:
        level = max(level, logging.WARNING)
    log = logging.getLogger("slife")
    log.handlers.clear()
    h = RichHandler(show_path=False, show_time=False, markup=False, console=_console(stderr=True))
    h.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(h)
    log.setLevel(level)
    log.propagate = False


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)


console = _console()


@contextmanager
def progress_bar(description: str, total: int | None = None, unit: str = "it") -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields `advance(n=1, total=None, description=None, info=None, reset=False)` (reset:
    start counting again from zero, e.g. at a new stage).

    Hidden when stderr is not a terminal (tests, CI logs), so only the final summary is printed.
    """
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    disable = not sys.stderr.isatty()
    with Progress(*cols, console=_console(stderr=True), disable=disable, transient=False) as prog:
        task = prog.add_task(description, total=total, info="")

        def advance(n: int = 1, total: int | None = None, description: str | None = None, info: str | None = None,
                    reset: bool = False):
            kw = {}
            if total is not None:
                kw["total"] = total
            if description is not None:
                kw["description"] = description
            if info is not None:
                kw["info"] = info
            if reset:  # a new stage: count (and time) from zero
                prog.reset(task, total=kw.pop("total", None), description=kw.pop("description", description), info="")
            prog.update(task, advance=n, **kw)

        yield advance
