"""Conformance builders for the partial-convolution family (NVIDIA PartialConv2d, PConv U-Net).

A ``PartialConv2d`` layer's options (stride, padding, dilation, mask mode) cannot be read off its
weights: they come from the manifest's ``options`` (the official constructor's ``args``/``kwargs``).
A U-Net is read off its shapes by ``convert.pconv.infer_config``.
"""

from __future__ import annotations

import torch

from imgsynth.convert import pconv
from imgsynth.models.registry import build_model


def _partialconv2d(sd: dict, man: dict) -> torch.nn.Module:
    opts = man.get("options", {})
    args = list(opts.get("args", []))
    kwargs = dict(opts.get("kwargs", {}))
    if not args:  # no manifest: a plain layer read off its weight
        w = sd["weight"]
        args = [int(w.shape[1]), int(w.shape[0]), int(w.shape[-1])]
        kwargs.setdefault("bias", "bias" in sd)
    config = dict(zip(("in_channels", "out_channels", "kernel_size"), args), **kwargs)
    layer = build_model("partial_conv2d", config)
    layer.load_state_dict(sd, strict=True)
    return layer


def _pconv_unet(sd: dict, man: dict) -> torch.nn.Module:
    config = pconv.infer_config(sd)
    model = build_model("pconv_unet", config)
    model.load_state_dict(pconv.from_naoto(sd, config) if config["renorm"] == "naoto" else pconv.from_mmagic(sd, config),
                          strict=True)
    return model


def _partialconv(sd: dict, man: dict) -> torch.nn.Module:
    if "PartialConv2d" in man.get("class", "") or set(sd) <= {"weight", "bias"}:
        return _partialconv2d(sd, man)
    return _pconv_unet(sd, man)


def DETECT(sd: dict) -> str | None:
    if "enc_1.conv.input_conv.weight" in sd or any(k.endswith("encoder.enc1.conv.weight") for k in sd):
        return "partialconv"
    return None


BUILDERS = {"partialconv": _partialconv}
