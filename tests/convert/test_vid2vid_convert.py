"""NVIDIA/vid2vid checkpoints -> imgsynth vid2vid: per-scale files, merged prefixes, netG_i, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from imgsynth.convert import vid2vid
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


def test_single_scale_file_loads_strictly():
    sd = _weights("vid2vid_composite_fg")
    cfg = vid2vid.infer_config(sd, fg_labels=[3, 4])
    assert cfg["n_scales"] == 1 and cfg["fg"] and cfg["norm"] == "batch" and cfg["n_frames"] == 3
    assert (cfg["label_nc"], cfg["ngf"], cfg["n_downsample"], cfg["n_blocks"]) == (6, 16, 2, 4)
    state = vid2vid.from_official(sd, cfg)
    build_model("vid2vid", cfg).load_state_dict(state, strict=True)
    assert torch.equal(state["scales.0.label_encoder.stem.conv.weight"], sd["model_down_seg.1.weight"])
    assert torch.equal(state["scales.0.fg_encoder.blocks.3.norm2.running_var"], sd["indv_res.3.conv_block.6.running_var"])


def test_per_scale_files_merge_coarsest_first():
    sd = _weights("vid2vid_composite_local2")
    scales = vid2vid.split_scales(sd)
    assert sorted(scales) == [0, 1]
    files = {"ckpt/latest_net_G1.pth": scales[1], "ckpt/latest_net_G0.pth": scales[0]}
    merged = vid2vid.merge_files(files)
    assert merged.keys() == sd.keys()
    cfg = vid2vid.infer_config(merged, fg_labels=[3, 4])
    assert cfg["n_scales"] == 2 and cfg["n_blocks_local"] == 3
    state = vid2vid.from_official_files(files, cfg)
    assert torch.equal(state["scales.1.image_decoder.up.0.conv.weight"], sd["netG1.model_up_img.3.weight"])
    with pytest.raises(WeightsError, match="n_scales = 3"):
        vid2vid.from_official(sd, {**cfg, "n_scales": 3})
    with pytest.raises(WeightsError, match="neither"):
        vid2vid.merge_files({"opt.txt": scales[0]})


def test_first_frame_generator_inside_the_merged_checkpoint():
    g = _weights("vid2vid_composite_fg")
    single = _weights("vid2vid_single_G")
    merged = vid2vid.merge_files({"a/latest_net_G0.pth": g, "label2city_single/latest_net_G_1024.pth": single})
    cfg = vid2vid.infer_config(merged, fg_labels=[3, 4])
    assert cfg["first_frame_arch"] == "pix2pixhd_global"
    assert cfg["first_frame_config"]["norm"] == "instance_tracked" and not cfg["first_frame_config"]["use_instance"]
    gen = build_model("vid2vid", cfg)
    gen.load_state_dict(vid2vid.from_official(merged, cfg), strict=True)
    assert torch.equal(gen.first_frame.stem.norm.running_mean, single["model.2.running_mean"])
    no_first = {k: v for k, v in cfg.items() if not k.startswith("first_frame")}
    with pytest.raises(WeightsError, match="names none"):
        vid2vid.from_official(merged, no_first)


def test_damaged_checkpoints_are_weights_errors():
    sd = _weights("vid2vid_composite_instance")
    cfg = vid2vid.infer_config(sd)
    assert cfg["norm"] == "instance_tracked" and not cfg["fg"]
    missing = dict(sd)
    del missing["model_final_w.1.weight"]
    with pytest.raises(WeightsError, match="missing 1 key"):
        vid2vid.from_official(missing, cfg)
    with pytest.raises(WeightsError, match="mixes"):
        vid2vid.split_scales({**sd, "netG1.model_down_seg.1.weight": sd["model_down_seg.1.weight"]})
    with pytest.raises(WeightsError, match="model_down_seg.1.weight"):
        vid2vid.split_scales({"foo.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="strict|does not have"):
        vid2vid.from_official_first_frame({**_weights("vid2vid_single_G"), "model.99.weight": torch.zeros(1)},
                                          vid2vid.first_frame_config(_weights("vid2vid_single_G"))[1])
