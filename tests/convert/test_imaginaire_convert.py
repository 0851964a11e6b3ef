"""imaginaire checkpoints -> imgsynth: net_G / averaged_model selection, spectral-norm folding, key names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from imgsynth.convert import imaginaire
from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "data"


def _weights(name: str) -> dict[str, torch.Tensor]:
    if not DATA.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {DATA} is missing")
        pytest.skip(f"{DATA} not found (conformance data lives beside the repo, not in it)")
    from safetensors.torch import load_file

    return load_file(str(DATA / f"{name}.weights.safetensors"))


def test_folding_matches_torch_spectral_norm_in_eval():
    conv = nn.utils.spectral_norm(nn.Conv2d(3, 5, 3))
    conv.train()
    conv(torch.randn(1, 3, 8, 8))  # one power iteration, as in training
    conv.eval()
    sd = {f"x.layers.conv.{k}": v for k, v in conv.state_dict().items()}
    folded = imaginaire.generator_state_dict(sd)
    assert set(folded) == {"x.conv.weight", "x.conv.bias"}
    assert torch.allclose(folded["x.conv.weight"], conv.weight, atol=1e-6)


def test_renames():
    t = torch.zeros(1)
    sd = imaginaire.generator_state_dict({
        "up_0.conv_block_0.layers.norm.mlps.1.0.layers.conv.weight": t,
        "conv_img.layers.conv.weight": t, "fc.layers.conv.bias": t,
        "flow_network_temp.conv_flow.0.layers.conv.weight": t, "label_embedding.up_2.layers.conv.bias": t,
    })
    assert set(sd) == {"up_0.conv_block_0.norm.mlps.1.weight", "conv_img.weight", "fc.bias",
                       "flow_network_temp.conv_flow.weight", "label_embedding.up_2.conv.bias"}


def test_averaged_model_is_preferred():
    a, m = torch.ones(2), torch.zeros(2)
    ckpt = {"net_G": {"module.fc.layers.conv.bias": m, "averaged_model.fc.layers.conv.bias": a,
                      "num_updates_tracked": torch.tensor(3)}, "net_D": {}}
    assert torch.equal(imaginaire.generator_state_dict(ckpt)["fc.bias"], a)
    only_module = {"module.fc.layers.conv.bias": m}
    assert torch.equal(imaginaire.generator_state_dict(only_module)["fc.bias"], m)
    with pytest.raises(WeightsError, match="_u/_v"):
        imaginaire.generator_state_dict({"fc.layers.conv.weight_orig": torch.zeros(2, 2)})
    with pytest.raises(WeightsError, match="not an imaginaire vid2vid"):
        imaginaire.infer_vid2vid_config({"foo.weight": torch.zeros(1)})


def test_vid2vid_roundtrip_and_flow_multiplier():
    sd = _weights("imaginaire_vid2vid")
    cfg = imaginaire.infer_vid2vid_config(sd, flow_multiplier=40)
    assert (cfg["num_layers"], cfg["num_downsamples_img"], cfg["multi_spade_layers"]) == (4, 2, 3)
    assert cfg["embed_arch"] == "encoderdecoder" and cfg["warp_embed_arch"] == "unet"
    gen = build_model("imaginaire_vid2vid", cfg)
    gen.load_state_dict(imaginaire.from_vid2vid(sd, cfg), strict=True)
    assert gen.flow_network_temp.multiplier == 40


def test_fs_shared_temporal_flow_is_dropped_and_k_read_off_the_attention():
    sd = _weights("imaginaire_fs_vid2vid_k2")
    assert any(k.startswith("flow_network_temp.") for k in sd)
    cfg = imaginaire.infer_fs_config(sd)
    assert cfg["few_shot_k"] == 2 and not cfg["sep_prev_flow"] and cfg["sep_warp_embed"]
    state = imaginaire.from_fs_vid2vid(sd, cfg)
    assert not any(k.startswith("flow_network_temp.") for k in state)
    build_model("fs_vid2vid", cfg).load_state_dict(state, strict=True)
    # a temporal network with its own values is a separate one (and then it is kept)
    sep = {k: (v + 1 if k.startswith("flow_network_temp.") and v.is_floating_point() else v) for k, v in sd.items()}
    assert imaginaire.infer_fs_config(sep)["sep_prev_flow"]
