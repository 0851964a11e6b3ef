"""Conformance loaders for the unconditional samplers: DCGAN (pytorch/examples, GAN zoo) and PGAN.

Each maps the official state dict through imgsynth's public API: ``infer_config`` -> converter ->
``build_model`` -> ``load_state_dict(strict=True)``. The official call conventions (``G(z)``,
``G(z, alpha=...)``) are the imgsynth ones, so no wrapper is needed.
"""

from __future__ import annotations

import torch

from imgsynth.convert import dcgan as dcgan_convert
from imgsynth.convert import progan as progan_convert
from imgsynth.models import build_model


def _dcgan_examples(state_dict: dict) -> torch.nn.Module:
    config = dcgan_convert.infer_config(state_dict)
    model = build_model("dcgan", config)
    model.load_state_dict(dcgan_convert.from_examples(state_dict, config), strict=True)
    return model


def _dcgan_ganzoo(state_dict: dict) -> torch.nn.Module:
    config = dcgan_convert.infer_config(state_dict)
    model = build_model("dcgan", config)
    model.load_state_dict(dcgan_convert.from_ganzoo(state_dict, config), strict=True)
    return model


def _pgan(state_dict: dict) -> torch.nn.Module:
    config = progan_convert.infer_config(state_dict)
    model = build_model("progan", config)
    model.load_state_dict(progan_convert.from_ganzoo(state_dict, config), strict=True)
    return model


LOADERS = {
    "dcgan_examples": _dcgan_examples,
    "dcgan_ganzoo_fashiongen": _dcgan_ganzoo,
    "pgan_celebahq256": _pgan,
}
