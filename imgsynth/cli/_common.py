"""CLI plumbing: error handling, stderr console, progress drawing and result printing."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable, Iterator
from contextlib import contextmanager

import typer

from imgsynth.errors import ImgsynthError, UsageError

STDIO = "-"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def resolve_output(inputs: list[str] | None, output: str | None, *, as_json: bool = False) -> str | None:
    """The pipe rule, checked before any work (exit 2 on a usage error).

    Input ``-`` with no ``-o``: the result goes to stdout when stdout is not a terminal, and the
    command is refused on a terminal. ``-o -`` is refused on a terminal, and with ``--json``
    (stdout carries the image). Input ``-`` from a terminal (nothing piped in) is refused too.
    """
    from_stdin = bool(inputs) and STDIO in inputs
    if from_stdin and _isatty(sys.stdin):
        raise UsageError("-: stdin is a terminal; pipe an image in (e.g. `cat photo.png | imgsynth ...`)")
    if output is None and from_stdin:
        if _isatty(sys.stdout):
            raise UsageError("input is stdin and stdout is a terminal: redirect stdout (> out.png) or give -o FILE")
        if as_json:
            raise UsageError("input is stdin and --json prints records on stdout: give -o FILE for the image")
        output = STDIO
    if output == STDIO:
        if as_json:
            raise UsageError("--json cannot be combined with -o - (stdout carries the image)")
        if _isatty(sys.stdout):
            raise UsageError("refusing to write PNG bytes to a terminal; redirect stdout or use -o FILE")
    return output


def stderr_console():
    """A rich console on stderr that honours NO_COLOR and only styles a terminal."""
    from rich.console import Console

    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def error_line(message: str) -> None:
    """Print ``error: message`` (one line) to stderr."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    sys.stderr.write(f"error: {first}\n")
    sys.stderr.flush()


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and exit code; Ctrl-C into 130.

    With ``--debug`` (a ``debug`` keyword argument of the command) the traceback is shown.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ImgsynthError as e:
            if debug:
                raise
            error_line(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def progress_bar(quiet: bool, label: str) -> Iterator[Callable[[int, int, str], None] | None]:
    """A callback drawing a rich progress bar on stderr, only when stderr is a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=stderr_console(), transient=True) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int, message: str) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def emit_report(report: Any, *, as_json: bool, quiet: bool) -> None:
    """Print result records (stdout with --json) and the summary / failures (stderr)."""
    if as_json:
        for r in report.results:
            sys.stdout.write(json.dumps(r.record()) + "\n")
        sys.stdout.flush()
    for r in report.failed:
        error_line(f"{r.error}")
    if not quiet:
        sys.stderr.write(report.summary() + "\n")


def finish(report: Any) -> None:
    """Exit 1 when any item failed."""
    if report.exit_code:
        raise typer.Exit(report.exit_code)
