"""The ``imgsynth`` command: a thin Typer app over the library.

Heavy imports (torch, cv2, the engine) happen inside command bodies, so ``imgsynth --help`` and
``imgsynth models list`` never import torch.
"""

from __future__ import annotations

from typing import Annotated

import typer

from imgsynth import __version__
from imgsynth.cli import _lazy
from imgsynth.cli._lazy import LazyGroup

_lazy.install()  # typer.rich_utils without rich.markdown / rich.traceback, which imgsynth never uses


def _sample(app: typer.Typer) -> None:
    from imgsynth.cli import sample as sample_cmd

    app.command("sample", help=sample_cmd.SAMPLE_HELP)(sample_cmd.sample)


def _interpolate(app: typer.Typer) -> None:
    from imgsynth.cli import sample as sample_cmd

    app.command("interpolate", help=sample_cmd.INTERP_HELP)(sample_cmd.interpolate)


def _translate(app: typer.Typer) -> None:
    from imgsynth.cli import translate as translate_cmd

    app.command("translate", help=translate_cmd.HELP)(translate_cmd.translate)


def _translate_video(app: typer.Typer) -> None:
    from imgsynth.cli import translate_video as translate_video_cmd

    app.command("translate-video", help=translate_video_cmd.HELP)(translate_video_cmd.translate_video)


def _inpaint(app: typer.Typer) -> None:
    from imgsynth.cli import inpaint as inpaint_cmd

    app.command("inpaint", help=inpaint_cmd.HELP)(inpaint_cmd.inpaint)


def _serve(app: typer.Typer) -> None:
    from imgsynth.cli import serve as serve_cmd

    app.command("serve", help=serve_cmd.HELP)(serve_cmd.serve)


def _train(app: typer.Typer) -> None:
    from imgsynth.cli import train as train_cmd

    app.add_typer(train_cmd.app, name="train")  # `train RECIPE` runs it, `train new` writes one


def _models(app: typer.Typer) -> None:
    from imgsynth.cli import models as models_cmd
    from imgsynth.cli import train as train_cmd

    if not any(c.name == "export" for c in models_cmd.app.registered_commands):
        models_cmd.app.command("export", help=train_cmd.EXPORT_HELP)(train_cmd.models_export)
        models_cmd.app.command("push", help=train_cmd.PUSH_HELP)(train_cmd.models_push)
    app.add_typer(models_cmd.app, name="models")


class _Commands(LazyGroup):
    """Each command's module is imported, and its options built, only when that command runs or shows help."""

    registrars = {"sample": _sample, "interpolate": _interpolate, "translate": _translate,
                  "translate-video": _translate_video, "inpaint": _inpaint, "serve": _serve, "train": _train,
                  "models": _models}


app = typer.Typer(
    name="imgsynth",
    cls=_Commands,
    help="Deep-learning image synthesis and editing: sample GANs, translate label maps, inpaint photos, train.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgsynth {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Deep-learning image synthesis and editing from the command line.

    [bold]Examples:[/bold]

      imgsynth inpaint photo.png --mask hole.png -o out.png

      imgsynth models list --task inpaint
    """


def run() -> None:
    """Console-script entry point."""
    import sys

    from imgsynth.cli._common import _silence_stdout

    try:
        app()
    except BrokenPipeError:  # stdout closed early (`imgsynth models list | head -1`)
        _silence_stdout()
        sys.exit(141)
