"""``imgsynth translate``: label maps, edges or photos to images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsynth.cli._common import (
    INPUT_KINDS, check_choice, check_model, check_palette, check_run_options, emit_report, finish, handle_errors,
    progress_bar, resolve_output,
)
from imgsynth.cli.options import (
    DebugOpt, DeviceOpt, JsonOpt, ModelOpt, OfflineOpt, OutputOpt, OverwriteOpt, PrecisionOpt,
    IN_PANEL, PaletteOpt, QuietOpt, RevisionOpt, RuntimeOpt, SeedOpt, WeightsOpt, WorkersOpt,
)


HELP = """Translate label, instance or panoptic maps, edges or photos into images: pix2pix, pix2pixHD, SPADE, panoptic.

[bold]Examples:[/bold]

  imgsynth translate frankfurt_000000_000294_gtFine_labelIds.png \\
      --model pix2pixhd-label2city-1024p -o city.png

  imgsynth translate labels/ --weights runs/spade/export \\
      --instance instances/ -o out/

  imgsynth translate facade_labels.png -m pix2pix-facades --concat -o out.png

  imgsynth translate examples/panoptic/ -m panoptic -o out/  [dim]# instanceIds maps[/dim]

  imgsynth translate shoe.jpg -m pix2pix-edges2shoes --input-kind edges \\
      -o shoe_out.png
"""


@handle_errors
def translate(
    inputs: Annotated[list[str], typer.Argument(help="Label maps or photos: files, folders, globs, @list.txt or -.",
                                                show_default=False)],
    input_kind: Annotated[Optional[str], typer.Option(
        "--input-kind", help="label | image | edges (Canny of the photo) | gray (colorisation) | "
        "clusters (the photo posterised by k-means, io.clusters colours, 8 by default). "
        "Default: the card's.", rich_help_panel=IN_PANEL)] = None,
    instance: Annotated[Optional[str], typer.Option(
        "--instance", help="Instance map file or folder (paired by stem). Default: *_instanceIds.png or "
        "<stem>_instance.png beside each label map.", rich_help_panel=IN_PANEL)] = None,
    palette: PaletteOpt = None,
    label_offset: Annotated[Optional[int], typer.Option(
        "--label-offset", help="Added to every label first (ADE20K's loader uses -1).", rich_help_panel=IN_PANEL)] = None,
    style: Annotated[Optional[Path], typer.Option(
        "--style", help="SPADE with a style encoder: take the style from this image.", rich_help_panel=IN_PANEL)] = None,
    segments: Annotated[Optional[Path], typer.Option(
        "--segments", help="Panoptic models: the COCO panoptic JSON whose segments_info describes the input PNGs.",
        rich_help_panel=IN_PANEL)] = None,
    concat: Annotated[bool, typer.Option("--concat", help="Write the (colourised) input beside the result.",
                                         rich_help_panel="Output")] = False,
    output: OutputOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    runtime: RuntimeOpt = "torch",
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    output = resolve_output(inputs, output, as_json=json)
    check_choice("--input-kind", input_kind, INPUT_KINDS)
    check_run_options(device, precision)
    check_model("translate", model, weights)
    check_palette(palette)
    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()
    from imgsynth.engine.translate import TranslateRequest, run_translate

    request = TranslateRequest(
        inputs=inputs, output=output, model=model, weights=weights, revision=revision, offline=offline,
        device=device, precision=precision, runtime=runtime, workers=workers, seed=seed, input_kind=input_kind,
        instance=instance, palette=palette, label_offset=label_offset, style=style, segments=segments, concat=concat,
        overwrite=overwrite,
    )
    with progress_bar(quiet, "translate") as progress:
        report = run_translate(request, progress)
    emit_report(report, as_json=json, quiet=quiet)
    finish(report)
