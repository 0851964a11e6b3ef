"""Conformance loaders for StyleGAN2-ADA (``stylegan2ada_tiny``, ``stylegan2ada_tiny_cond``).

The official state dict goes through the public converter API unchanged; the constructor config
comes from the official ``init_kwargs`` the weights were made with (the manifests' ``options``),
since ``conv_clamp`` cannot be read off tensor shapes. The imgsynth generator takes the case kwargs
(``truncation_psi``, ``truncation_cutoff``, ``noise_mode``) as they are: no wrapper needed.
"""

from __future__ import annotations

import torch

from imgsynth.convert.stylegan2_pkl import config_from_init_kwargs, from_official, infer_config
from imgsynth.models.registry import build_model

OFFICIAL_INIT_KWARGS = {
    "stylegan2ada_tiny": {
        "z_dim": 64, "c_dim": 0, "w_dim": 64, "img_resolution": 64, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 8},
        "synthesis_kwargs": {"channel_base": 1024, "channel_max": 64, "num_fp16_res": 4, "conv_clamp": 256},
    },
    "stylegan2ada_tiny_cond": {
        "z_dim": 64, "c_dim": 10, "w_dim": 64, "img_resolution": 32, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2},
        "synthesis_kwargs": {"channel_base": 1024, "channel_max": 64, "num_fp16_res": 4, "conv_clamp": 2},
    },
}


def _loader(name: str):
    def load(official_state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
        config = config_from_init_kwargs(OFFICIAL_INIT_KWARGS[name])
        shapes = infer_config(official_state_dict)
        assert all(shapes[k] == config[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "mapping_layers"))
        model = build_model("stylegan2", config)
        model.load_state_dict(from_official(official_state_dict, config), strict=True)
        return model

    return load


LOADERS = {name: _loader(name) for name in OFFICIAL_INIT_KWARGS}
