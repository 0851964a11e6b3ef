"""Conformance loaders for the video generators: NVIDIA/vid2vid, imaginaire vid2vid, few-shot vid2vid.

Every model is built from its weights (``infer_config`` on the official state dict) plus the
few options the shapes cannot tell, which come from the model's manifest ``options``
(``fg_labels``, ``flow_output_multiplier``, ``initial_few_shot_K``), through the converters'
``config_from_options`` (which ``benchmarks/conformance_speed.py`` uses too). The wrappers below only map
the recorded call conventions (``../shared/conformance/README.md``, "Video synthesis") onto the
imgsynth forward signatures; all real work is in the package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from torch import nn

from imgsynth.convert import imaginaire as imaginaire_convert
from imgsynth.convert import vid2vid as vid2vid_convert
from imgsynth.models import build_model

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "data"


def manifest_options(name: str) -> dict[str, Any]:  # for the rollout tests
    """``options`` of a conformance model (from the folder check.py was given, else ../shared)."""
    data = Path(os.environ.get("CONFORMANCE_DATA") or DATA)
    with open(data / f"{name}.manifest.json") as f:
        return json.load(f)["options"]


class OfficialCompositeCall(nn.Module):
    """NVIDIA/vid2vid ``CompositeGenerator.forward(input, img_prev, mask, img_feat_coarse,
    flow_feat_coarse, img_fg_feat_coarse, use_raw_only)`` over a one-scale ``vid2vid`` generator.

    The fg mask is recomputed from the labels (the official call passes the same mask); the
    adapter flag ``_grid_align_corners`` selects the warp's ``grid_sample`` behaviour.
    """

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, input, img_prev, mask=None, img_feat_coarse=None, flow_feat_coarse=None,
                img_fg_feat_coarse=None, use_raw_only=False, _grid_align_corners=False):
        out = self.gen(input, img_prev, use_raw_only=use_raw_only, align_corners=_grid_align_corners)
        return out.image, out.flow, out.weight, out.raw


class OfficialTwoScaleCall(nn.Module):
    """``G(label_fine, img_prev_fine, mask_fine, label_coarse, img_prev_coarse, mask_coarse,
    use_raw_only)`` -> fine then coarse (img_final, flow, weight, img_raw): the recorded adapter
    over ``Vid2VidModelG.generate_frame_infer`` for two scales."""

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, label_fine, img_prev_fine, mask_fine, label_coarse, img_prev_coarse, mask_coarse,
                use_raw_only=False):
        out = self.gen(label_fine, [img_prev_coarse, img_prev_fine], use_raw_only=use_raw_only)
        coarse, fine = out.scales
        return (*fine, *coarse)


class NonNoneOutputs(nn.Module):
    """Returns the non-None outputs in order (the recorded imaginaire adapters drop absent entries)."""

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, *args):
        return tuple(t for t in self.gen(*args) if t is not None)


def vid2vid_generator(state_dict: dict, options: dict) -> nn.Module:
    """The imgsynth ``vid2vid`` generator for official weights; ``options`` are the manifest's
    (what the weights cannot tell: instance maps in the input, the foreground labels)."""
    arch, cfg = vid2vid_convert.config_from_options(state_dict, options)
    if arch != "vid2vid":
        raise ValueError(f"not composite vid2vid weights (they build {arch})")
    gen = build_model(arch, cfg)
    gen.load_state_dict(vid2vid_convert.from_official(state_dict, cfg), strict=True)
    return gen


def first_frame_generator(state_dict: dict) -> nn.Module:
    """``netG_i`` (pix2pixHD global / local with tracked InstanceNorm) from its official weights."""
    arch, cfg = vid2vid_convert.first_frame_config(state_dict)
    gen = build_model(arch, cfg)
    gen.load_state_dict(vid2vid_convert.from_official_first_frame(state_dict, cfg), strict=True)
    return gen


def imaginaire_generator(state_dict: dict, options: dict) -> nn.Module:
    """The imgsynth ``imaginaire_vid2vid`` generator; ``options`` is the manifest's imaginaire config."""
    arch, cfg = imaginaire_convert.config_from_options(state_dict, options)
    gen = build_model(arch, cfg)
    gen.load_state_dict(imaginaire_convert.from_vid2vid(state_dict, cfg), strict=True)
    return gen


def fs_generator(state_dict: dict, options: dict) -> nn.Module:
    """The imgsynth ``fs_vid2vid`` generator; ``options`` is the manifest's imaginaire config."""
    arch, cfg = imaginaire_convert.config_from_options(state_dict, options)
    gen = build_model(arch, cfg)
    gen.load_state_dict(imaginaire_convert.from_fs_vid2vid(state_dict, cfg), strict=True)
    return gen


def _build_vid2vid(state_dict: dict, man: dict) -> nn.Module:
    if vid2vid_convert.is_first_frame(state_dict):
        return first_frame_generator(state_dict)
    gen = vid2vid_generator(state_dict, man.get("options", {}))
    return OfficialTwoScaleCall(gen) if gen.n_scales == 2 else OfficialCompositeCall(gen)


def _detect(state_dict: dict) -> str | None:
    keys = list(state_dict)
    if any(k.startswith("weight_generator.") for k in keys):
        return "imaginaire_fs_vid2vid"
    if any(k.startswith(("model_down_seg", "netG0.")) for k in keys):
        return "vid2vid"
    if any(".layers.norm.mlps." in k for k in keys) and any(k.startswith("flow_network_temp.") for k in keys):
        return "imaginaire_vid2vid"
    return None


# Builders by manifest family (adapter.py): the stored configs are reduced (ngf 16, 2 downsamplings,
# 4 blocks, 6 labels + edge x 3 frames at 64x128; imaginaire widths / 4), built from their weights.
BUILDERS: dict[str, Callable[[dict, dict], nn.Module]] = {
    "vid2vid": _build_vid2vid,
    "imaginaire_vid2vid": lambda sd, man: NonNoneOutputs(imaginaire_generator(sd, man.get("options", {}))),
    "imaginaire_fs_vid2vid": lambda sd, man: NonNoneOutputs(fs_generator(sd, man.get("options", {}))),
}
DETECT = _detect
