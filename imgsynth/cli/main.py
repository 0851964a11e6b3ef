"""The ``imgsynth`` command: a thin Typer app over the library.

Heavy imports (torch, cv2, the engine) happen inside command bodies, so ``imgsynth --help`` and
``imgsynth models list`` never import torch.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from imgsynth import __version__
from imgsynth.cli import _lazy
from imgsynth.cli._lazy import LazyGroup, Registrar

_lazy.install()  # typer.rich_utils without rich.markdown / rich.traceback, which imgsynth never uses


def _command(name: str, module: str, function: str, help_name: str) -> Registrar:
    """Registers ``imgsynth.cli.<module>.<function>`` as command ``name`` with the module's ``<help_name>``."""

    def register(app: typer.Typer) -> None:
        mod = importlib.import_module(f"imgsynth.cli.{module}")
        app.command(name, help=getattr(mod, help_name))(getattr(mod, function))

    return register


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
    """Each command's options are built only when it runs or shows its help (the top-level help
    imports the command modules for their help texts alone)."""

    registrars = {
        "sample": _command("sample", "sample", "sample", "SAMPLE_HELP"),
        "interpolate": _command("interpolate", "sample", "interpolate", "INTERP_HELP"),
        "translate": _command("translate", "translate", "translate", "HELP"),
        "translate-video": _command("translate-video", "translate_video", "translate_video", "HELP"),
        "inpaint": _command("inpaint", "inpaint", "inpaint", "HELP"),
        "serve": _command("serve", "serve", "serve", "HELP"),
        "train": _train,
        "models": _models,
    }


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
