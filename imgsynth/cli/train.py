"""``imgsynth train`` and ``imgsynth models export`` / ``models push``: train, export, publish."""

from __future__ import annotations

import json as jsonlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from imgsynth.cli._common import handle_errors, stderr_console
from imgsynth.cli.options import (
    DebugOpt, DeviceOpt, JsonOpt, OfflineOpt, PrecisionOpt, QuietOpt, SeedOpt, WorkersOpt,
)

HELP = """Train a model from a TOML recipe; Ctrl-C writes a checkpoint, --resume continues exactly.

[bold]Examples:[/bold]

  imgsynth train examples/train/dcgan-fashion-mnist.toml

  imgsynth train examples/train/dcgan-fashion-mnist.toml --resume \\
      --export runs/dcgan-fashion-mnist/export

  imgsynth train recipe.toml --set run.steps=200 --set optim.g_lr=1e-4 \\
      --set data.batch_size=32

  torchrun --nproc_per_node=2 -m imgsynth train recipe.toml  [dim]# 2 GPUs[/dim]

Outputs go to run.out_dir: checkpoints/ (with the resolved recipe beside each), samples/ (grids from fixed seeds), losses.png, config.toml. stdout gets the last checkpoint's path, or with --export the weights-card stanza of the exported model.
"""

GROUP_HELP = """Train on your own images: write a recipe with `train new`, run it with `train RECIPE`.

[bold]From nothing to a sampled model:[/bold]

  imgsynth train new dcgan --data photos/ -o my.toml

  imgsynth train my.toml --export runs/my/export

  imgsynth sample --weights runs/my/export --seeds 0-15 --grid 4x4 \\
      -o grid.png

[bold]Families[/bold] (data they train on; a recipe for each):

  dcgan, gan, progan, stylegan, stylegan2: a folder of images (unconditional sampling); stylegan2 trains with adaptive augmentation

    imgsynth train new stylegan2 --data photos/ --size 64 -o sg2.toml

  pix2pix: paired folders matched by file name, or inputs derived from photos (edges, gray, clusters)

    imgsynth train new pix2pix --data inputs/ --target outputs/ -o p2p.toml

    imgsynth train new pix2pix --data photos/ --derive edges -o edges.toml

  pix2pixhd, spade: label maps (ids in the first channel) -> photos

    imgsynth train new spade --data labels/ --target photos/ \\
        --size 128 -o spade.toml

  panoptic: Fashion-MNIST mosaics with panoptic maps

    imgsynth train new panoptic --data /usr/share/datasets/fashion-mnist \\
        -o pan.toml

  pconv: inpainting on a folder of photos (holes drawn during training)

    imgsynth train new pconv --data photos/ --size 128 -o inpaint.toml

[bold]Data sources[/bold] (data.source in a recipe, chosen from what --data holds): folder (--data DIR), paired (--data DIR --target DIR), masked (pconv), edges / gray / clusters (pix2pix --derive), and from the Fashion-MNIST IDX folder (apt-get install dataset-fashion-mnist) fashion-mnist, fashion-mnist-labels (spade, pix2pixhd), mosaics (panoptic):

  imgsynth train new dcgan --data /usr/share/datasets/fashion-mnist \\
      -o fm.toml

  imgsynth train new spade --data /usr/share/datasets/fashion-mnist \\
      -o fm-labels.toml

  imgsynth train new pix2pix --data photos/ --derive gray -o colourise.toml

[bold]Runs:[/bold]

  imgsynth train my.toml --resume \\
      --set run.steps=8000   [dim]# continue, train longer[/dim]

  imgsynth train my.toml \\
      --set augment.ada=on   [dim]# adaptive augmentation for few images[/dim]
"""

NEW_HELP = """Write a complete, commented recipe for your data: source, size, fit, networks, losses, steps.

The run, its export and the model card carry your run name (--name, else the recipe file's name). fit: crop (default for photos: short side scaled, centre kept), resize (whole image squashed to a square) or pad (black borders; the default for Fashion-MNIST); the recipe says which it chose and why.

[bold]Examples:[/bold]

  imgsynth train new dcgan --data photos/ -o my.toml

  imgsynth train new pix2pix --data sketches/ --target photos/ \\
      --size 256 -o sketch2photo.toml

  imgsynth train new stylegan2 --data /usr/share/datasets/fashion-mnist \\
      -o fm.toml
"""

EXPORT_HELP = """Export a training checkpoint (or a run folder's newest) as a --weights folder.

Writes model.safetensors (the generator; EMA weights when the run kept an EMA), config.json and a model-card README.md, and prints a weights/ card stanza on stdout.

[bold]Examples:[/bold]

  imgsynth models export runs/dcgan-fashion-mnist \\
      runs/dcgan-fashion-mnist/export

  imgsynth models export runs/x/checkpoints/step-00002000.safetensors \\
      out/ --dtype fp16

With --onnx DIR the first argument is a card id or a --weights folder, and DIR
gets the generator as an ONNX graph (generator.onnx; mapping.onnx +
synthesis.onnx for StyleGAN samplers), config.json with its pre/post-processing,
and model.safetensors; stdout gets the card's \\[onnx] stanza. Run it with
--runtime onnx --weights DIR (needs the onnx extra).

  imgsynth models export cyclegan-horse2zebra --onnx onnx/horse2zebra
"""

PUSH_HELP = """Publish an exported folder to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`).

[bold]Examples:[/bold]

  imgsynth models push runs/dcgan-fashion-mnist/export \\
      you/dcgan-fashion-mnist --dry-run

  imgsynth models push runs/dcgan-fashion-mnist/export \\
      you/dcgan-fashion-mnist --private
"""


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _fmt_losses(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in losses.items())


class _Reporter:
    """Draws training progress: a rich bar on a terminal, plain lines otherwise, nothing with --quiet."""

    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.quiet, self.as_json = quiet, as_json
        self.console = stderr_console()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> "_Reporter":
        if not self.quiet and sys.stderr.isatty():
            from rich.progress import (
                BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[losses]}"),
                TimeRemainingColumn(), console=self.console,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def __call__(self, p: Any) -> None:
        if self.as_json and p.kind == "val":
            sys.stdout.write(jsonlib.dumps({"event": "val", "step": p.step, "metrics": p.losses}) + "\n")
            sys.stdout.flush()
        if self.as_json and p.kind == "log":
            sys.stdout.write(jsonlib.dumps({"event": "log", "step": p.step, "losses": p.losses,
                                            "images_per_s": round(p.images_per_s, 2)}) + "\n")
            sys.stdout.flush()
        if p.kind == "start":
            if self.bar is not None:
                self.task = self.bar.add_task("train", total=p.total, completed=p.step, speed="", losses="")
            self._line(p.message)
        elif p.kind == "step":
            if self.bar is not None and self.task is not None:
                self.bar.update(self.task, completed=p.step)
        elif p.kind == "log":
            if self.bar is not None and self.task is not None:
                self.bar.update(self.task, completed=p.step, speed=f"{p.images_per_s:.0f} img/s",
                                losses=_fmt_losses(p.losses))
            else:
                self._line(f"step {p.step}/{p.total}  {_fmt_losses(p.losses)}  {p.images_per_s:.0f} img/s")
        elif p.kind in ("sample", "checkpoint"):
            if self.bar is None:
                self._line(f"{p.kind}: {p.path}")
        elif p.kind == "info":
            self._line(p.message)
        elif p.kind == "val":
            self._line(f"validation at step {p.step}: {_fmt_losses(p.losses)}")
        elif p.kind == "best":
            self._line(f"best so far ({_fmt_losses(p.losses)}): {p.path}")


@handle_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe (see examples/train/).", show_default=False)],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a recipe value, section.key=value (repeatable), e.g. --set run.steps=500.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the newest checkpoint in run.out_dir (exactly where it stopped).")] = False,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="After training, export the generator to this folder (loads with --weights).")] = None,
    device: DeviceOpt = None,  # type: ignore[assignment]
    precision: PrecisionOpt = None,  # type: ignore[assignment]
    workers: WorkersOpt = None,
    seed: SeedOpt = None,  # type: ignore[assignment]
    quiet: QuietOpt = False,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    from imgsynth.engine.device import prepare_runtime

    # before torch loads: spinning OpenMP threads made training up to 50x slower on a shared CPU
    prepare_runtime()
    overrides = list(set_ or [])
    # command-line options win over the recipe and over --set
    for key, value in (("run.device", device), ("run.precision", precision),
                       ("data.workers", workers), ("run.seed", seed)):
        if value is not None:
            overrides.append(f"{key}={jsonlib.dumps(value)}")

    from imgsynth.errors import ConfigError
    from imgsynth.training.config import load_recipe, recipe_error

    cfg = load_recipe(recipe, overrides)
    from imgsynth.training.loop import train as run_training

    main = _is_rank0()
    with _Reporter(quiet or not main, json) as reporter:
        try:
            result = run_training(cfg, resume=resume, progress=reporter)
        except ConfigError as exc:  # a recipe value the family or a network refuses: name the file
            raise recipe_error(recipe, exc, overrides) from None
    if not main:
        return
    record: dict[str, Any] = {
        "event": "done", "step": result.step, "interrupted": result.interrupted,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "out_dir": str(result.out_dir), "images_per_s": round(result.images_per_s, 2),
        "device": result.device, "precision": result.precision,
    }
    if result.interrupted:
        if json:
            sys.stdout.write(jsonlib.dumps(record) + "\n")
        sys.stderr.write(
            f"interrupted at step {result.step}; checkpoint {result.checkpoint}\n"
            f"continue with: {resume_command(recipe, overrides, export)}\n"
        )
        raise typer.Exit(130)
    if not quiet:
        sys.stderr.write(f"trained {result.step} steps ({result.images_per_s:.0f} img/s); "
                         f"checkpoint {result.checkpoint}\n")
        if result.skipped:
            sys.stderr.write(f"skipped {len(result.skipped)} unreadable file(s): {', '.join(result.skipped[:5])}"
                             f"{' ...' if len(result.skipped) > 5 else ''}\n")
    if export is None:
        sys.stdout.write((jsonlib.dumps(record) if json else str(result.checkpoint)) + "\n")
        return
    from imgsynth.training.export import export as export_weights

    out = export_weights(result.checkpoint, export)
    _print_export(out, record, json, quiet)


def resume_command(recipe: Path, overrides: list[str], export: Optional[Path] = None) -> str:
    """The command that resumes this run: the same recipe and every override (quoted for a shell)."""
    import shlex

    parts = ["imgsynth", "train", str(recipe), "--resume"]
    for item in overrides:
        parts += ["--set", item]
    if export is not None:
        parts += ["--export", str(export)]
    return " ".join(shlex.quote(p) for p in parts)


@handle_errors
def new(
    family: Annotated[str, typer.Argument(help="dcgan, gan, progan, stylegan, stylegan2, pix2pix, pix2pixhd, "
                                               "spade, panoptic or pconv.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Your images (inputs or label maps for paired families), "
                                                       "or the Fashion-MNIST IDX folder.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Recipe file to write (.toml).",
                                         show_default=False)],
    target: Annotated[Optional[Path], typer.Option(
        "--target", help="Target images, paired with --data by file name (pix2pix, pix2pixhd, spade).")] = None,
    size: Annotated[Optional[int], typer.Option(
        "--size", help="Square training size, a power of two (default: per family, never above your images).")] = None,
    fit: Annotated[Optional[str], typer.Option(
        "--fit", help="crop | resize | pad: how an image becomes a square (default: crop; pad for Fashion-MNIST).")] = None,
    derive: Annotated[Optional[str], typer.Option(
        "--derive", help="pix2pix without --target: inputs made from --data (edges | gray | clusters).")] = None,
    label_nc: Annotated[Optional[int], typer.Option(
        "--label-nc", min=1, help="Label classes of label maps (default: 1 + the largest id found).")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Run name for runs/NAME and the export (default: the recipe file's name).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Training steps (default: per family).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing recipe file.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    from imgsynth.errors import OutputError
    from imgsynth.training.recipes import new_recipe

    if output.exists() and not force:
        raise OutputError(f"{output}: exists; choose another -o or pass --force to replace it")
    text, info = new_recipe(family, data, target=target, size=size, fit=fit, derive=derive, label_nc=label_nc,
                            name=name or output.stem, steps=steps)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
    sys.stdout.write(f"{output}\n")
    if not quiet:
        extra = "".join(f"\n  {n}" for n in info.notes)
        sys.stderr.write(
            f"wrote {output}: {info.family} on {info.items} item(s) from data.source = {info.source!r}, "
            f"{info.size}x{info.size}, fit = {info.fit!r}, {info.steps} steps, run name {info.name!r}{extra}\n"
            f"next: imgsynth train {output} --export runs/{info.name}/export\n"
        )


class _TrainGroup(TyperGroup):
    """``imgsynth train RECIPE ...`` runs a recipe (the ``run`` command); ``train new ...`` writes one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_TrainGroup, help=GROUP_HELP, no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})
app.command("run", help=HELP)(train)  # also `imgsynth train RECIPE`
app.command("new", help=NEW_HELP)(new)


def _print_export(out: Any, record: dict[str, Any], as_json: bool, quiet: bool) -> None:
    if as_json:
        record = {**record, "export": str(out.out_dir), "sha256": out.sha256, "card": out.card_toml}
        sys.stdout.write(jsonlib.dumps(record) + "\n")
    else:
        sys.stdout.write(out.card_toml)
    if not quiet:
        for note in out.notes:
            sys.stderr.write(f"note: {note}\n")
        sys.stderr.write(
            f"exported {out.arch} ({out.task}, {'EMA, ' if out.ema else ''}{out.dtype}, step {out.steps}) "
            f"to {out.out_dir}; try: imgsynth {out.task} --weights {out.out_dir}\n"
        )


@handle_errors
def models_export(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint file, or a run folder (its newest checkpoint); with --onnx a card id or a --weights "
             "folder.", show_default=False)],
    out_dir: Annotated[Optional[Path], typer.Argument(help="Folder to write.", show_default=False)] = None,
    dtype: Annotated[Optional[str], typer.Option(
        "--dtype", help="fp32 | fp16 (default: the recipe's export.dtype).")] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Export the raw generator, not its EMA.")] = False,
    license: Annotated[Optional[str], typer.Option("--license", help="Licence on the card (SPDX id).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name / card id.")] = None,
    onnx: Annotated[Optional[Path], typer.Option(
        "--onnx", help="Write the generator of a card id / --weights folder as ONNX to this folder.")] = None,
    offline: OfflineOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    if onnx is not None:
        from imgsynth.engine.onnx import export_model_onnx

        stanza = export_model_onnx(str(checkpoint), onnx, offline=offline)
        if json:
            sys.stdout.write(jsonlib.dumps({"event": "export", "export": str(onnx), "onnx": stanza["stanza"]}) + "\n")
        else:
            sys.stdout.write(stanza["toml"])
        if not quiet:
            sys.stderr.write(f"exported {stanza['arch']} ({stanza['task']}) as ONNX to {onnx}; try: imgsynth "
                             f"{stanza['task']} --runtime onnx --weights {onnx}\n")
        return
    if out_dir is None:
        raise typer.BadParameter("give the folder to write (OUT_DIR), or --onnx DIR")
    from imgsynth.training.export import export as export_weights

    out = export_weights(checkpoint, out_dir, dtype=dtype, use_ema=not no_ema, license=license, name=name)
    _print_export(out, {"event": "export"}, json, quiet)


@handle_errors
def models_push(
    folder: Annotated[Path, typer.Argument(help="A folder written by --export / models export.",
                                           show_default=False)],
    repo_id: Annotated[str, typer.Argument(help="Hub repository, namespace/name.", show_default=False)],
    revision: Annotated[Optional[str], typer.Option(
        "--revision", help="Branch to push to (created if missing; default main).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repository as private.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check the folder and show what would be uploaded; no network.")] = False,
    message: Annotated[Optional[str], typer.Option("--message", help="Commit message.")] = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    from imgsynth.training.export import push_to_hub

    result = push_to_hub(folder, repo_id, revision=revision, private=private, dry_run=dry_run,
                         commit_message=message)
    if json:
        sys.stdout.write(jsonlib.dumps(result.record()) + "\n")
        return
    if dry_run:
        if not quiet:
            sys.stderr.write(f"dry run: would upload to {result.repo_url} ({result.revision}):\n")
        for f in result.files:
            sys.stdout.write(f"{f['path']}\t{f['size']}\t{f['sha256']}\n")
        return
    sys.stdout.write(f"{result.commit_url}\n")
    if not quiet:
        sys.stderr.write(
            f"pushed {len(result.files)} file(s) to {result.repo_url} at commit {result.commit}; card source:\n"
            f'[source]\nkind = "hub"\nrepo_id = "{repo_id}"\nfilename = "model.safetensors"\n'
            f'revision = "{result.commit}"\n'
        )
