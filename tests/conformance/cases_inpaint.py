"""Conformance loaders for the partial-convolution family (NVIDIA PartialConv2d, PConv U-Net).

The PartialConv2d options are the ones the official layers were built with (manifest
``options``); they cannot be read off a state dict (stride, padding, dilation, mask mode).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from imgsynth.convert import pconv
from imgsynth.models.registry import build_model

_PCONV2D: dict[str, dict[str, Any]] = {
    "partialconv2d_single": dict(
        in_channels=4, out_channels=8, kernel_size=3, stride=1, padding=1, bias=True, multi_channel=False
    ),
    "partialconv2d_multi_s2": dict(
        in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1, bias=True, multi_channel=True
    ),
    "partialconv2d_multi_nobias_dil2": dict(
        in_channels=4, out_channels=6, kernel_size=5, stride=1, padding=4, dilation=2, bias=False,
        multi_channel=True,
    ),
}


def _partialconv2d(name: str) -> Callable[[dict], torch.nn.Module]:
    def load(state_dict: dict) -> torch.nn.Module:
        layer = build_model("partial_conv2d", _PCONV2D[name])
        layer.load_state_dict(state_dict, strict=True)
        return layer

    return load


def _pconv_unet(state_dict: dict) -> torch.nn.Module:
    config = pconv.infer_config(state_dict)
    model = build_model("pconv_unet", config)
    model.load_state_dict(pconv.from_naoto(state_dict, config), strict=True)
    return model


LOADERS: dict[str, Callable[[dict], torch.nn.Module]] = {
    **{name: _partialconv2d(name) for name in _PCONV2D},
    "pconv_unet_places2": _pconv_unet,
}
