"""Conformance loaders for the video generators: NVIDIA/vid2vid, imaginaire vid2vid, few-shot vid2vid.

Every model is built from its weights (``infer_config`` on the official state dict) plus the
few options the shapes cannot tell, which come from the model's manifest ``options``
(``fg_labels``, ``flow_output_multiplier``, ``initial_few_shot_K``). The wrappers below only map
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


def manifest_options(name: str) -> dict[str, Any]:
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


def vid2vid_generator(name: str, state_dict: dict) -> nn.Module:
    """The imgsynth ``vid2vid`` generator for a conformance model's official weights."""
    opts = manifest_options(name)
    cfg = vid2vid_convert.infer_config(state_dict, use_instance=opts.get("use_instance", True),
                                       fg_labels=opts.get("fg_labels"))
    gen = build_model("vid2vid", cfg)
    gen.load_state_dict(vid2vid_convert.from_official(state_dict, cfg), strict=True)
    return gen


def first_frame_generator(state_dict: dict) -> nn.Module:
    """``netG_i`` (pix2pixHD global / local with tracked InstanceNorm) from its official weights."""
    arch, cfg = vid2vid_convert.first_frame_config(state_dict)
    gen = build_model(arch, cfg)
    gen.load_state_dict(vid2vid_convert.from_official_first_frame(state_dict, cfg), strict=True)
    return gen


def imaginaire_generator(name: str, state_dict: dict) -> nn.Module:
    """The imgsynth ``imaginaire_vid2vid`` generator for a conformance model's weights."""
    gen_opts = manifest_options(name)["gen"]
    cfg = imaginaire_convert.infer_vid2vid_config(state_dict, flow_multiplier=gen_opts["flow"]["flow_output_multiplier"])
    gen = build_model("imaginaire_vid2vid", cfg)
    gen.load_state_dict(imaginaire_convert.from_vid2vid(state_dict, cfg), strict=True)
    return gen


def fs_generator(name: str, state_dict: dict) -> nn.Module:
    """The imgsynth ``fs_vid2vid`` generator for a conformance model's weights."""
    opts = manifest_options(name)
    cfg = imaginaire_convert.infer_fs_config(state_dict,
                                             flow_multiplier=opts["gen"]["flow"]["flow_output_multiplier"],
                                             few_shot_k=opts["data"]["initial_few_shot_K"])
    gen = build_model("fs_vid2vid", cfg)
    gen.load_state_dict(imaginaire_convert.from_fs_vid2vid(state_dict, cfg), strict=True)
    return gen


def _vid2vid(name: str) -> Callable[[dict], nn.Module]:
    def load(sd: dict) -> nn.Module:
        gen = vid2vid_generator(name, sd)
        return OfficialTwoScaleCall(gen) if gen.n_scales == 2 else OfficialCompositeCall(gen)

    return load


def _wrapped(builder: Callable[[str, dict], nn.Module], name: str) -> Callable[[dict], nn.Module]:
    return lambda sd: NonNoneOutputs(builder(name, sd))


LOADERS: dict[str, Callable[[dict], nn.Module]] = {
    # Stored configs: ngf 16, 2 downsamplings, 4 blocks, 6 labels + edge x 3 frames, 64x128
    # (local2: + a second scale at ngf 8); imaginaire: widths / 4, 64x128 (fs: 64x64).
    "vid2vid_composite_fg": _vid2vid("vid2vid_composite_fg"),
    "vid2vid_composite_instance": _vid2vid("vid2vid_composite_instance"),
    "vid2vid_composite_local2": _vid2vid("vid2vid_composite_local2"),
    "vid2vid_single_G": first_frame_generator,
    "imaginaire_vid2vid": _wrapped(imaginaire_generator, "imaginaire_vid2vid"),
    "imaginaire_fs_vid2vid": _wrapped(fs_generator, "imaginaire_fs_vid2vid"),
    "imaginaire_fs_vid2vid_k2": _wrapped(fs_generator, "imaginaire_fs_vid2vid_k2"),
}
