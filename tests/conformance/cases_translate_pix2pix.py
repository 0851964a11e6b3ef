"""Conformance builders for the pix2pix family: pix2pix U-Net, CycleGAN ResNet, pix2pixHD.

``infer_arch``/``infer_config`` read the architecture off the tensor shapes; the options the
weights cannot tell come from the manifest (``no_dropout`` for a U-Net, ``no_instance`` for
pix2pixHD's instance-edge channel). The official forward is ``G(x)``: no wrapper needed.
"""

from __future__ import annotations

import torch

from imgsynth.convert import pix2pix, pix2pixhd
from imgsynth.models import build_model


def _junyanz(sd: dict, man: dict) -> torch.nn.Module:
    opts = man.get("options", {})
    arch = pix2pix.infer_arch(sd)
    cfg = pix2pix.infer_config(sd, use_dropout=None if "no_dropout" not in opts else not opts["no_dropout"])
    model = build_model(arch, cfg)
    model.load_state_dict(pix2pix.from_junyanz(sd, cfg), strict=True)
    return model


def _nvidia(sd: dict, man: dict) -> torch.nn.Module:
    opts = man.get("options", {})
    arch = pix2pixhd.infer_arch(sd)
    cfg = pix2pixhd.infer_config(sd, use_instance=not opts.get("no_instance", False))
    if "label_nc" in opts and opts["label_nc"] != cfg["label_nc"]:
        raise ValueError(f"manifest label_nc={opts['label_nc']}, the weights {cfg['label_nc']}")
    model = build_model(arch, cfg)
    model.load_state_dict(pix2pixhd.from_nvidia(sd, cfg), strict=True)
    return model


def DETECT(sd: dict) -> str | None:
    if "model.model.0.weight" in sd or any(k.startswith("model.10.conv_block.") for k in sd):
        return "cyclegan_pix2pix"  # junyanz: a U-Net, or a ResNet with 2 downsamplings (blocks from model.10)
    if "model.1.weight" in sd:
        return "pix2pixhd"  # 3+ downsamplings, or local enhancers (model1_1.*)
    return None


BUILDERS = {"cyclegan_pix2pix": _junyanz, "pix2pixhd": _nvidia}
