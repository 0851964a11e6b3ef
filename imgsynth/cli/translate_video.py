"""``imgsynth translate-video``: a clip of label maps, edges or photos to a translated clip."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsynth.cli._common import (
    INPUT_KINDS, check_choice, check_model, check_palette, check_run_options, emit_report, finish, handle_errors,
    progress_bar,
)
from imgsynth.cli.options import (
    DebugOpt, DeviceOpt, JsonOpt, ModelOpt, OfflineOpt, OverwriteOpt, PrecisionOpt, QuietOpt, RevisionOpt,
    IN_PANEL, PaletteOpt, SeedOpt, WeightsOpt,
)

VIDEO_PANEL = "Video"

HELP = """Translate a clip frame by frame or with a video model (vid2vid): frames, an MP4 or a GIF out.

INPUT is a folder of frames (natural order: f2 before f10), a glob in quotes, or a video file. Video models (vid2vid) make each frame from the previous ones; image models (pix2pix, pix2pixHD, SPADE, ...) run frame by frame (--mode per-frame). Frames are written as they are made: Ctrl-C and run again to resume. MP4 output is H.264 / yuv420p (plays in browsers) and needs pip install 'imgsynth\\[video]'.

[bold]Examples:[/bold]

  imgsynth translate-video examples/video/shapes/ \\
      -o out.mp4  [dim]# bundled default[/dim]

  imgsynth translate-video examples/video/shapes/ --mode per-frame \\
      -o baseline.gif

  imgsynth translate-video 'seq/*_labelIds.png' --model M \\
      --first-frame zeros -o frames/

  imgsynth translate-video walk.mp4 --model pix2pix-edges-photos \\
      -o edges2photo.mp4
"""


@handle_errors
def translate_video(
    input: Annotated[str, typer.Argument(help="A folder of frames, a glob ('clip/*.png') or a video file.",
                                         show_default=False)],
    mode: Annotated[str, typer.Option(
        "--mode", help="auto (video for video models, else per-frame) | video | per-frame (each frame alone; "
        "a video model runs its first-frame generator).", rich_help_panel=VIDEO_PANEL)] = "auto",
    first_frame: Annotated[Optional[str], typer.Option(
        "--first-frame", help="How a video model starts: single (a single-image generator makes the first "
        "frames) | zeros (no history: frame 0 hallucinated) | real (given real frames). Default: the card's.",
        rich_help_panel=VIDEO_PANEL)] = None,
    first_frame_model: Annotated[Optional[str], typer.Option(
        "--first-frame-model", help="Card id or export folder of the single-image generator (--first-frame "
        "single). Default: the card's.", rich_help_panel=VIDEO_PANEL)] = None,
    first_frames: Annotated[Optional[str], typer.Option(
        "--first-frames", help="Real first frames for --first-frame real: a folder, glob or video.",
        rich_help_panel=VIDEO_PANEL)] = None,
    fps: Annotated[Optional[float], typer.Option(
        "--fps", min=0.1, help="Frame rate of an MP4/GIF output. Default: the input video's, else 24.",
        rich_help_panel=VIDEO_PANEL)] = None,
    max_frames: Annotated[Optional[int], typer.Option(
        "--max-frames", min=1, help="Translate only the first N frames.", rich_help_panel=VIDEO_PANEL)] = None,
    input_kind: Annotated[Optional[str], typer.Option(
        "--input-kind", help="label | image | edges | gray | clusters (as `translate`). Default: the card's.",
        rich_help_panel=IN_PANEL)] = None,
    instance: Annotated[Optional[str], typer.Option(
        "--instance", help="Folder of instance maps (paired by stem). Default: *_instanceIds.png or "
        "<stem>_instance.png beside each label map.", rich_help_panel=IN_PANEL)] = None,
    palette: PaletteOpt = None,
    label_offset: Annotated[Optional[int], typer.Option(
        "--label-offset", help="Added to every label first.", rich_help_panel=IN_PANEL)] = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="A folder of PNG frames, NAME.mp4 or NAME.gif. Default: out/",
        rich_help_panel="Output")] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    # usage errors (exit 2) before any heavy import, as `translate` does
    check_choice("--mode", mode, ("auto", "video", "per-frame"))
    check_choice("--first-frame", first_frame, ("single", "zeros", "real"))
    check_choice("--input-kind", input_kind, INPUT_KINDS)
    check_run_options(device, precision)
    check_model("translate-video", model, weights, also=("translate",))
    check_palette(palette)
    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()
    from imgsynth.engine.video import VideoRequest, run_translate_video

    request = VideoRequest(
        input=input, output=output, model=model, weights=weights, revision=revision, offline=offline,
        device=device, precision=precision, mode=mode, first_frame=first_frame, first_frame_model=first_frame_model,
        first_frames=first_frames, input_kind=input_kind, instance=instance, palette=palette,
        label_offset=label_offset, fps=fps, max_frames=max_frames, seed=seed, overwrite=overwrite,
    )
    with progress_bar(quiet, "translate-video") as progress:
        report = run_translate_video(request, progress)
    emit_report(report, as_json=json, quiet=quiet)
    finish(report)
