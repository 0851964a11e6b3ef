"""CLI plumbing: error handling, stderr console, progress drawing and result printing."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
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


def one_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``, ...): a name can never
    break the line or drive the terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


def error_line(message: str) -> None:
    """Print ``error: message`` (one line, control characters escaped) to stderr."""
    text = str(message).strip()
    sys.stderr.write(f"error: {one_line(text) if text else 'unknown error'}\n")
    sys.stderr.flush()


# Choices checked at parse time, before torch is imported (tests keep them equal to the library's).
PRECISIONS = ("fp32", "fp16", "bf16")
INPAINT_STRATEGIES = ("auto", "pad", "resize", "crops", "sharp")
INPAINT_ENSEMBLES = (1, 2, 4, 8)
INPUT_KINDS = ("label", "image", "edges", "gray", "clusters")
NOISE_MODES = ("const", "random", "none")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_choice(option: str, value: Any, choices: tuple) -> None:
    """A usage error (exit 2) unless ``value`` is None or one of ``choices``."""
    if value is not None and value not in choices:
        raise UsageError(f"unknown {option} {one_line(repr(value))}; use one of {', '.join(map(str, choices))}")


def check_run_options(device: str | None, precision: str | None) -> None:
    """``--device`` and ``--precision`` spelled right (availability is checked when torch is up)."""
    if device is not None and not _DEVICE.match(device.strip().lower()):
        raise UsageError(f"unknown device {one_line(repr(device))}; use auto, cpu, cuda, cuda:N or mps")
    check_choice("--precision", precision, PRECISIONS)


def check_palette(palette: str | None) -> None:
    """``--palette`` names a known palette or a readable JSON file: an unknown name is an error even
    where no colour map would need it."""
    if palette is not None:
        from imgsynth.pipelines.labels import load_palette

        load_palette(palette)


def check_model(task: str, model: str | None, weights: Any = None, also: tuple[str, ...] = ()) -> None:
    """``--model`` names a card (or an architecture's default) of ``task`` (or of a task in ``also``);
    ``--weights`` is an export folder. Unknown names are usage errors (exit 2), found before any heavy import."""
    if model is not None and weights is not None:
        raise UsageError("give either --model or --weights, not both")
    if model is not None:
        from imgsynth.engine.cards import get_card
        from imgsynth.errors import UnknownModelError

        try:
            card = get_card(model)
        except UnknownModelError as e:
            raise UsageError(one_line(str(e))) from None
        if card.task not in (task, *also):
            raise UsageError(f"model {card.id!r} is a {card.task!r} model; `imgsynth {task}` needs a "
                             f"{' or '.join(repr(t) for t in (task, *also))} model")
    if weights is not None:
        from pathlib import Path

        if not Path(weights).is_dir():
            raise UsageError(f"--weights {one_line(str(weights))}: not a folder (give a folder written by "
                             "`imgsynth train --export`)")


def _os_error(e: OSError) -> str:
    where = e.filename if e.filename is not None else None
    what = e.strerror or str(e)
    return f"{where}: {what}" if where is not None else what


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
        except BrokenPipeError:
            # the reader went away (`| head`): stop quietly, as Unix tools do
            _silence_stdout()
            raise typer.Exit(141) from None
        except click_exceptions():
            raise
        except OSError as e:
            if debug:
                raise
            error_line(_os_error(e))
            raise typer.Exit(1) from None
        except MemoryError:
            if debug:
                raise
            error_line("out of memory; try a smaller --batch-size, smaller inputs or fewer at a time")
            raise typer.Exit(1) from None
        except Exception as e:  # the last guard: never a traceback without --debug
            if debug:
                raise
            error_line(f"internal error ({type(e).__name__}: {e}); run again with --debug for the traceback "
                       "and please report it")
            raise typer.Exit(1) from None

    return wrapper


def click_exceptions() -> tuple[type, ...]:
    """Click's own exceptions (usage errors and exits), which Click turns into messages itself.

    Taken from Typer (which may carry its own copy of Click), so they are the ones it raises.
    """
    bad = typer.BadParameter.__mro__
    click_exception = next(c for c in bad if c.__name__ == "ClickException")
    return (click_exception, typer.Exit, typer.Abort)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def progress_bar(quiet: bool, label: str) -> Iterator[Callable[[int, int, str], None] | None]:
    """A callback drawing a rich progress bar on stderr, only when stderr is a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    # shown from the start, so the wait for imports and the model load is visible too; then one
    # step per finished item (the runner reports after every batch, one item by default)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=stderr_console(), transient=True) as prog:
        task = prog.add_task(f"{label}: loading the model", total=None)

        def update(done: int, total: int, message: str) -> None:
            name = f" {one_line(os.path.basename(message))}" if message else ""
            prog.update(task, completed=done, total=total, description=f"{label}{name[:40]}")

        yield update


_IMPORTED = time.perf_counter()


def process_seconds() -> float:
    """Wall seconds since this process started (interpreter start-up included, where the OS says)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


def emit_report(report: Any, *, as_json: bool, quiet: bool) -> None:
    """Print result records (stdout with --json) and the summary / failures (stderr).

    The summary's time is the whole command's, process start-up included.
    """
    report.seconds = max(report.seconds, process_seconds())
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
