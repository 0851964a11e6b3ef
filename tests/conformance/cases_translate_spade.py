"""Conformance loaders for SPADE (NVlabs/SPADE): the generator and its two sub-layers."""

from __future__ import annotations

import torch

from imgsynth.convert.spade import convert_keys, from_official, infer_config
from imgsynth.layers.spade_norm import SPADE, SPADEResnetBlock
from imgsynth.models import build_model


def _generator(hints: dict):
    def load(sd: dict) -> torch.nn.Module:
        cfg = infer_config(sd, **hints)
        model = build_model("spade", cfg)
        model.load_state_dict(from_official(sd, cfg), strict=True)
        return model

    return load


def _norm_layer(sd: dict) -> torch.nn.Module:
    # SPADE('spadesyncbatch3x3', norm_nc=64, label_nc=36); called as norm(x, segmap).
    layer = SPADE(64, 36, norm="syncbatch")
    layer.load_state_dict(convert_keys(sd), strict=True)
    return layer


def _resblock(sd: dict) -> torch.nn.Module:
    # SPADEResnetBlock(64, 32) on a 36-channel label map; called as block(x, seg).
    block = SPADEResnetBlock(64, 32, 36, norm="syncbatch")
    block.load_state_dict(convert_keys(sd), strict=True)
    return block


LOADERS = {
    # Stored configs: cityscapes --ngf 8 --crop_size 128, ade20k --ngf 4 --crop_size 64.
    "spade_cityscapes": _generator({"dataset": "cityscapes", "crop_size": 128}),
    "spade_ade20k": _generator({"dataset": "ade20k", "crop_size": 64}),
    "spade_norm_layer": _norm_layer,
    "spade_resblock": _resblock,
}
