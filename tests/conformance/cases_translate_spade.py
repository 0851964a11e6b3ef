"""Conformance builders for SPADE (NVlabs/SPADE): the generator and its two sub-layers.

A generator's shapes do not say how its label channels split into labels, a dontcare label and
the instance-edge channel, nor its crop size / aspect ratio / upsampling mode: those are
``infer_config`` hints taken from the manifest's options. The layers are read off their shapes;
the manifest's norm string (``spadesyncbatch3x3``) gives the parameter-free norm.
"""

from __future__ import annotations

import re

import torch

from imgsynth.convert.spade import convert_keys, from_official, infer_config
from imgsynth.layers.spade_norm import SPADE, SPADEResnetBlock
from imgsynth.models import build_model

_NORM = re.compile(r"spade(syncbatch|batch|instance)(\d)x\d")


def _norm(text: str | None, sd: dict, prefix: str) -> str:
    m = _NORM.search(text or "")
    if m:
        return m.group(1)
    return "batch" if f"{prefix}param_free_norm.running_mean" in sd else "instance"


def _generator(sd: dict, man: dict) -> torch.nn.Module:
    opts = man.get("options", {})
    hints = {}
    if "label_nc" in opts:
        hints["label_nc"] = opts["label_nc"]
    if "contain_dontcare_label" in opts:
        hints["contain_dontcare"] = bool(opts["contain_dontcare_label"])
    if "no_instance" in opts:
        hints["use_instance"] = not opts["no_instance"]
    for key in ("crop_size", "aspect_ratio", "num_upsampling_layers"):
        if key in opts:
            hints[key] = opts[key]
    cfg = infer_config(sd, **hints)
    model = build_model("spade", cfg)
    model.load_state_dict(from_official(sd, cfg), strict=True)
    return model


def _norm_layer(sd: dict, man: dict) -> torch.nn.Module:
    shared, gamma = sd["mlp_shared.0.weight"], sd["mlp_gamma.weight"]
    layer = SPADE(int(gamma.shape[0]), int(shared.shape[1]), nhidden=int(shared.shape[0]),
                  kernel_size=int(shared.shape[-1]), norm=_norm(man.get("options", {}).get("config_text"), sd, ""))
    layer.load_state_dict(convert_keys(sd), strict=True)
    return layer


def _resblock(sd: dict, man: dict) -> torch.nn.Module:
    c0 = sd.get("conv_0.weight_orig", sd.get("conv_0.weight"))
    c1 = sd.get("conv_1.weight_orig", sd.get("conv_1.weight"))
    shared = sd["norm_0.mlp_shared.0.weight"]
    block = SPADEResnetBlock(int(c0.shape[1]), int(c1.shape[0]), int(shared.shape[1]), nhidden=int(shared.shape[0]),
                             kernel_size=int(shared.shape[-1]),
                             norm=_norm(man.get("options", {}).get("norm_G"), sd, "norm_0."))
    block.load_state_dict(convert_keys(sd), strict=True)
    return block


def _spade(sd: dict, man: dict) -> torch.nn.Module:
    if "mlp_shared.0.weight" in sd:
        return _norm_layer(sd, man)
    if "norm_0.mlp_shared.0.weight" in sd:
        return _resblock(sd, man)
    return _generator(sd, man)


def DETECT(sd: dict) -> str | None:
    if "mlp_shared.0.weight" in sd or "norm_0.mlp_shared.0.weight" in sd or "head_0.norm_0.mlp_shared.0.weight" in sd:
        return "spade"
    return None


BUILDERS = {"spade": _spade}
