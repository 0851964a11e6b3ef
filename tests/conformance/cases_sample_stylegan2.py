"""Conformance builders for StyleGAN2-ADA.

The constructor config comes from the official ``init_kwargs`` the weights were made with (the
manifest's ``options``) through ``config_from_init_kwargs``, since ``conv_clamp`` and
``num_fp16_res`` cannot be read off tensor shapes; with no manifest, ``infer_config`` reads the
rest off the shapes. The imgsynth generator takes the case kwargs (``truncation_psi``,
``truncation_cutoff``, ``noise_mode``) as they are: no wrapper needed.
"""

from __future__ import annotations

import torch

from imgsynth.convert.stylegan2_pkl import config_from_init_kwargs, from_official, infer_config
from imgsynth.models.registry import build_model


def _stylegan2(sd: dict, man: dict) -> torch.nn.Module:
    shapes = infer_config(sd)
    opts = man.get("options")
    config = config_from_init_kwargs(opts) if opts else shapes
    for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "mapping_layers"):
        if shapes[key] != config[key]:
            raise ValueError(f"manifest options say {key}={config[key]}, the weights {shapes[key]}")
    model = build_model("stylegan2", config)
    model.load_state_dict(from_official(sd, config), strict=True)
    return model


def DETECT(sd: dict) -> str | None:
    return "stylegan2ada" if "synthesis.b4.const" in sd and "mapping.fc0.weight" in sd else None


BUILDERS = {"stylegan2ada": _stylegan2}
