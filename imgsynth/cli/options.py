"""Options shared by several commands, defined once as ``Annotated`` aliases.

Only typer is imported here (no torch): ``imgsynth --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

MODEL_PANEL = "Model"
RUN_PANEL = "Device and batching"
OUT_PANEL = "Output"

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Card id or architecture (its default card); see `imgsynth models list`.",
    rich_help_panel=MODEL_PANEL)]
WeightsOpt = Annotated[Optional[Path], typer.Option(
    "--weights", help="A folder written by `imgsynth train --export` (model.safetensors + config.json).",
    rich_help_panel=MODEL_PANEL)]
RevisionOpt = Annotated[Optional[str], typer.Option(
    "--revision", help="Hub revision to use instead of the card's pinned one (sha256 is then not checked).",
    rich_help_panel=MODEL_PANEL)]
OfflineOpt = Annotated[bool, typer.Option(
    "--offline", help="Never touch the network; use only cached or bundled weights (also: HF_HUB_OFFLINE=1).",
    rich_help_panel=MODEL_PANEL)]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="auto | cpu | cuda | cuda:N | mps.", rich_help_panel=RUN_PANEL)]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="fp32 | fp16 (GPU) | bf16 (GPU, or a CPU with AVX512-BF16/AMX).", rich_help_panel=RUN_PANEL)]
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", help="torch | onnx (onnxruntime, fp32; needs the onnx extra).", rich_help_panel=RUN_PANEL)]
BatchSizeOpt = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, help="Items per forward pass (results do not depend on it).",
    rich_help_panel=RUN_PANEL)]
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", min=0, help="Decoding processes (default: 1 for batches, 0 for one image).",
    rich_help_panel=RUN_PANEL)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.", rich_help_panel=RUN_PANEL)]
OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="A file (one result), a directory, or - for PNG on stdout.",
    rich_help_panel=OUT_PANEL)]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Redo outputs that already exist in the output directory (default: skip them).",
    rich_help_panel=OUT_PANEL)]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON record per result on stdout.", rich_help_panel=OUT_PANEL)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.",
                                        rich_help_panel=OUT_PANEL)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.", rich_help_panel=OUT_PANEL)]

# translate and translate-video: how label maps are read
IN_PANEL = "Conditioning input"
PaletteOpt = Annotated[Optional[str], typer.Option(
    "--palette", help="Decode colour-coded label maps with a dataset palette: cityscapes, ade20k, "
    "coco_stuff, fashion_mnist.", rich_help_panel=IN_PANEL)]
