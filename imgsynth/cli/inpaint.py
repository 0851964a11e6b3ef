"""``imgsynth inpaint``: fill the holes of photos."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from imgsynth.cli._common import (
    INPAINT_ENSEMBLES, INPAINT_STRATEGIES, check_choice, check_model, check_run_options, emit_report, finish,
    handle_errors, progress_bar, resolve_output,
)
from imgsynth.cli.options import (
    BatchSizeOpt, DebugOpt, DeviceOpt, JsonOpt, ModelOpt, OfflineOpt, OutputOpt, OverwriteOpt,
    PrecisionOpt, QuietOpt, RevisionOpt, RuntimeOpt, SeedOpt, WeightsOpt, WorkersOpt,
)
from imgsynth.errors import UsageError

MASK_PANEL = "Mask"

HELP = """Fill the holes of photos (white mask pixels) with a network or a classical method.

[bold]Examples:[/bold]

  imgsynth inpaint photo.png --mask hole.png -o out.png

  imgsynth inpaint photos/ --mask masks/ -o filled/ --model telea

  cat photo.png | imgsynth inpaint - --mask hole.png --model ns > out.png

  imgsynth inpaint cutout.png -o out.png     [dim]# RGBA: transparent = hole[/dim]

  imgsynth inpaint big.jpg --mask big_mask.png -o out.png --strategy crops

  imgsynth inpaint big.jpg --mask big_mask.png -o out.png --model patchmatch

[bold]--strategy[/bold] (how a photo meets the method):
  [bold]auto[/bold]    networks: pad up to twice the card's resolution, sharp beyond
  [bold]sharp[/bold]   networks: crops around the holes, scaled down only as far as
          the thickest hole needs; full-resolution patches of the photo
          are then laid into the hole as the fill says (guided PatchMatch)
  [bold]crops[/bold]   squares around the holes (2x the hole, at least the card's
          resolution), scaled down to the resolution: smooth fills.
          Classical methods: on the whole photo unless crops (patchmatch
          then copies from the crop's surroundings only: faster)
  [bold]pad[/bold]     networks: the whole photo at full size
  [bold]resize[/bold]  networks: the whole photo at the card's resolution
"""


@handle_errors
def inpaint(
    inputs: Annotated[list[str], typer.Argument(help="Photos: files, folders, globs, @list.txt or - (stdin).",
                                                show_default=False)],
    mask: Annotated[Optional[str], typer.Option(
        "--mask", help="One mask for all photos, or a folder of masks named <stem>.png / <stem>_mask.png. "
        "Default: <stem>_mask.png beside each photo, else its alpha channel.", rich_help_panel=MASK_PANEL)] = None,
    invert_mask: Annotated[bool, typer.Option("--invert-mask", help="Black marks the hole instead of white.",
                                              rich_help_panel=MASK_PANEL)] = False,
    resize_mask: Annotated[bool, typer.Option("--resize-mask", help="Scale a mask of another size to the photo.",
                                              rich_help_panel=MASK_PANEL)] = False,
    dilate: Annotated[int, typer.Option("--dilate", min=0, help="Grow the hole by N pixels.",
                                        rich_help_panel=MASK_PANEL)] = 0,
    radius: Annotated[int, typer.Option("--radius", min=1, help="Neighbourhood radius of telea / ns.")] = 3,
    strategy: Annotated[str, typer.Option("--strategy", help="auto | sharp | crops | pad | resize (explained "
                                          "above); classical methods heed only crops.")] = "auto",
    ensemble: Annotated[Optional[int], typer.Option(
        "--ensemble", help="Networks: average the fill over 1, 2, 4 or 8 flips / transposes of the photo "
        "(self-ensemble; N times the network time). Default: the card's setting; 1 for photos "
        "filled with sharp.", show_default=False)] = None,
    concat: Annotated[bool, typer.Option("--concat", help="Write input | mask | result side by side.",
                                         rich_help_panel="Output")] = False,
    output: OutputOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    runtime: RuntimeOpt = "torch",
    batch_size: BatchSizeOpt = 1,
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    output = resolve_output(inputs, output, as_json=json)
    check_choice("--strategy", strategy, INPAINT_STRATEGIES)
    if ensemble is not None and ensemble not in INPAINT_ENSEMBLES:
        raise UsageError(f"--ensemble must be one of {', '.join(map(str, INPAINT_ENSEMBLES))}, got {ensemble}")
    check_run_options(device, precision)
    check_model("inpaint", model, weights)
    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()
    from imgsynth.engine.inpaint import InpaintRequest, run_inpaint

    request = InpaintRequest(
        inputs=inputs, mask=mask, output=output, model=model, weights=weights, revision=revision,
        offline=offline, device=device, precision=precision, runtime=runtime, batch_size=batch_size, workers=workers,
        seed=seed, invert_mask=invert_mask, resize_mask=resize_mask, dilate=dilate, radius=radius,
        strategy=strategy, ensemble=ensemble, concat=concat, overwrite=overwrite,
    )
    with progress_bar(quiet, "inpaint") as progress:
        report = run_inpaint(request, progress)
    emit_report(report, as_json=json, quiet=quiet)
    finish(report)


inpaint.__doc__ = HELP
