"""Conformance loaders for the pix2pix family: pix2pix U-Net, CycleGAN ResNet, pix2pixHD.

Each maps the official state dict through the public converters: ``infer_config`` reads the
architecture off the tensor shapes, the converter renames the keys, and the model loads with
``strict=True``. The official forward is ``G(x)`` for all four, so no wrapper is needed.
"""

from __future__ import annotations

import torch

from imgsynth.convert import pix2pix, pix2pixhd
from imgsynth.models import build_model


def _junyanz(sd: dict) -> torch.nn.Module:
    arch = pix2pix.infer_arch(sd)
    cfg = pix2pix.infer_config(sd)
    model = build_model(arch, cfg)
    model.load_state_dict(pix2pix.from_junyanz(sd, cfg), strict=True)
    return model


def _nvidia(sd: dict) -> torch.nn.Module:
    arch = pix2pixhd.infer_arch(sd)
    cfg = pix2pixhd.infer_config(sd)
    model = build_model(arch, cfg)
    model.load_state_dict(pix2pixhd.from_nvidia(sd, cfg), strict=True)
    return model


LOADERS = {
    # Stored configs: unet_256 --ngf 8 (256x256), resnet_9blocks --ngf 16 (128x128),
    # pix2pixHD global / local --ngf 4 (64x128); label_nc 35 + instance edges = 36 input channels.
    "pix2pix_unet256_facades": _junyanz,
    "cyclegan_resnet9_horse2zebra": _junyanz,
    "pix2pixhd_global_512p": _nvidia,
    "pix2pixhd_local_1024p": _nvidia,
}
