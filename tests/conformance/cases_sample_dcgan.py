"""Conformance builders for the unconditional samplers: DCGAN (pytorch/examples, GAN zoo) and PGAN.

Official state dict -> ``infer_config`` (with the GAN zoo's ``lossMode``, which a bare generator
state dict does not record) -> converter -> ``build_model`` -> ``load_state_dict(strict=True)``.
The official call conventions (``G(z)``) are the imgsynth ones, so no wrapper is needed.
"""

from __future__ import annotations

import torch

from imgsynth.convert import dcgan as dcgan_convert
from imgsynth.convert import progan as progan_convert
from imgsynth.models import build_model


def _dcgan(sd: dict, man: dict) -> torch.nn.Module:
    config = dcgan_convert.infer_config(sd, loss_mode=man.get("options", {}).get("lossMode"))
    model = build_model("dcgan", config)
    model.load_state_dict(dcgan_convert.from_any(sd, config), strict=True)
    return model


def _pgan(sd: dict, man: dict) -> torch.nn.Module:
    opts = man.get("options", {})
    config = progan_convert.infer_config(
        sd, loss_mode=opts.get("lossMode"), pixel_norm=opts.get("perChannelNormalization"),
        leaky_relu_leak=opts.get("leakyReluLeak"),
    )
    model = build_model("progan", config)
    model.load_state_dict(progan_convert.from_ganzoo(sd, config), strict=True)
    return model


def DETECT(sd: dict) -> str | None:
    if "formatLayer.module.weight" in sd:
        return "pgan"
    if "formatLayer.weight" in sd or "main.0.weight" in sd:
        return "dcgan"
    return None


BUILDERS = {"dcgan": _dcgan, "pgan": _pgan}
