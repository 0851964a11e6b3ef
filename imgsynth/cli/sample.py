"""``imgsynth sample`` and ``imgsynth interpolate``: unconditional generators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsynth.cli._common import (
    NOISE_MODES, check_choice, check_model, check_run_options, emit_report, finish, handle_errors, progress_bar,
    resolve_output,
)
from imgsynth.pipelines.seeds import parse_grid, parse_seeds
from imgsynth.cli.options import (
    BatchSizeOpt, DebugOpt, DeviceOpt, JsonOpt, ModelOpt, OfflineOpt, OutputOpt, OverwriteOpt,
    PrecisionOpt, QuietOpt, RevisionOpt, RuntimeOpt, WeightsOpt,
)

STYLE_PANEL = "Latents and styles"

SAMPLE_HELP = """Generate images from seeds with an unconditional (or class-conditional) GAN.

The same seed gives the same image whatever the batch size or device.

[bold]Examples:[/bold]

  imgsynth sample -m dcgan-fashion-mnist --seeds 0-15 --grid 4x4 -o grid.png

  imgsynth sample --weights runs/dcgan/export --num 64 -o samples/

  imgsynth sample -m stylegan2-ffhq-256 --seeds 1,5 --trunc 0.7 \\
      --mix-seeds 9 --mix-layers 8-13 -o mixed/
"""

INTERP_HELP = """Walk between latents: frames, an animated GIF, an MP4, or a grid.

[bold]Examples:[/bold]

  imgsynth interpolate -m dcgan-fashion-mnist --seeds 1,2,3 -o walk.gif

  imgsynth interpolate -m stylegan2-ffhq-256 --seeds 1,2 --space w \\
      --method lerp -o walk.mp4

  imgsynth interpolate --weights export/ --seeds 1-8 --steps 8 --grid \\
      -o figure.png
"""

TruncOpt = Annotated[float, typer.Option("--trunc", help="Truncation psi (StyleGAN): 1 = none, 0 = the mean w.",
                                         rich_help_panel=STYLE_PANEL)]
CutoffOpt = Annotated[Optional[int], typer.Option("--trunc-cutoff", help="Truncate only the first N ws.",
                                                  rich_help_panel=STYLE_PANEL)]
ClassOpt = Annotated[Optional[int], typer.Option("--class", help="Class index for conditional models.",
                                                 rich_help_panel=STYLE_PANEL)]
NoiseOpt = Annotated[str, typer.Option("--noise-mode", help="StyleGAN noise: const | random | none.",
                                       rich_help_panel=STYLE_PANEL)]


def _choice(model, weights, revision, offline, device, precision, runtime="torch"):
    from imgsynth.engine.sample import ModelChoice

    return ModelChoice(model, weights, revision, offline, device, precision, runtime)


def _layers(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    return parse_seeds(text, what="--mix-layers index")


@handle_errors
def sample(
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds: 0,1,4-6.")] = None,
    num: Annotated[Optional[int], typer.Option("--num", "-n", min=1, help="N images from seeds 0..N-1.")] = None,
    grid: Annotated[Optional[str], typer.Option("--grid", help="Write one ROWSxCOLS grid, e.g. 4x4.")] = None,
    trunc: TruncOpt = 1.0,
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const",
    mix_seeds: Annotated[Optional[str], typer.Option("--mix-seeds", help="Style-mixing seeds (one, or one per seed).",
                                                     rich_help_panel=STYLE_PANEL)] = None,
    mix_layers: Annotated[Optional[str], typer.Option("--mix-layers", help="w indices taken from the mixing seed, "
                                                      "e.g. 8-13 (default: the second half).",
                                                      rich_help_panel=STYLE_PANEL)] = None,
    output: OutputOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    runtime: RuntimeOpt = "torch",
    batch_size: BatchSizeOpt = 8,
    overwrite: OverwriteOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    output = resolve_output(None, output, as_json=json)
    # every usage error before torch is imported
    if seeds is not None and num is not None:
        raise typer.BadParameter("give --seeds or --num, not both")
    if num is not None and num > 1_000_000:
        raise typer.BadParameter(f"--num {num:,} is more than 1,000,000 images in one run; split it")
    seed_list = parse_seeds(seeds) if seeds is not None else list(range(num if num is not None else 1))
    mix = parse_seeds(mix_seeds, what="--mix-seeds seed") if mix_seeds else None
    layers = _layers(mix_layers)
    shape = parse_grid(grid) if grid else None
    check_choice("--noise-mode", noise_mode, NOISE_MODES)
    if class_idx is not None and class_idx < 0:
        raise typer.BadParameter(f"--class {class_idx}: must be 0 or more")
    check_run_options(device, precision)
    check_model("sample", model, weights)
    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()
    from imgsynth.engine.sample import SampleRequest, run_sample

    request = SampleRequest(
        seeds=seed_list, choice=_choice(model, weights, revision, offline, device, precision, runtime),
        output=output,
        batch_size=batch_size, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx,
        noise_mode=noise_mode, mix_seeds=mix, mix_layers=layers, grid=shape, overwrite=overwrite,
    )
    with progress_bar(quiet, "sample") as progress:
        report = run_sample(request, progress)
    emit_report(report, as_json=json, quiet=quiet)
    finish(report)


@handle_errors
def interpolate(
    latents: Annotated[Optional[list[Path]], typer.Argument(help="Key latents as .npy files ((z_dim,) or (K, z_dim)).",
                                                            show_default=False)] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Key seeds, e.g. 1,2,3.")] = None,
    space: Annotated[str, typer.Option("--space", help="z, or w (StyleGAN: walk after the mapping network).")] = "z",
    method: Annotated[str, typer.Option("--method", help="lerp | slerp.")] = "slerp",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Frames per segment between two keys.")] = 30,
    loop: Annotated[bool, typer.Option("--loop", help="Walk back to the first key (seamless loop).")] = False,
    fps: Annotated[float, typer.Option("--fps", min=0.1, help="GIF/MP4 frame rate.")] = 24.0,
    grid: Annotated[bool, typer.Option("--grid", help="One image: a row per pair of keys, steps+1 columns.")] = False,
    trunc: TruncOpt = 1.0,
    trunc_cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const",
    output: Annotated[str, typer.Option("--output", "-o", help="NAME.gif, NAME.mp4, a folder (frames), "
                                        "or NAME.png with --grid.")] = "walk.gif",
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: BatchSizeOpt = 8,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    output = resolve_output(None, output, as_json=json)
    key_seeds = parse_seeds(seeds) if seeds else None
    check_choice("--space", space, ("z", "w"))
    check_choice("--method", method, ("lerp", "slerp"))
    check_choice("--noise-mode", noise_mode, NOISE_MODES)
    check_run_options(device, precision)
    check_model("sample", model, weights)
    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()
    from imgsynth.engine.sample import InterpolateRequest, run_interpolate

    request = InterpolateRequest(
        choice=_choice(model, weights, revision, offline, device, precision),
        seeds=key_seeds, latents=latents or None, output=output, space=space,
        method=method, steps=steps, loop=loop, fps=fps, grid=grid, batch_size=batch_size,
        truncation_psi=trunc, truncation_cutoff=trunc_cutoff, class_idx=class_idx, noise_mode=noise_mode,
    )
    with progress_bar(quiet, "interpolate") as progress:
        report = run_interpolate(request, progress)
    emit_report(report, as_json=json, quiet=quiet)
    finish(report)
