"""``data.source = "clips"`` (synthetic clips with exact flow) and the ``vid2vid`` training family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError
from imgsynth.layers.warp import flow_warp
from imgsynth.pipelines.translate import colour_clusters
from imgsynth.training.clips import SyntheticClips, render_clip
from imgsynth.training.config import DataConfig, from_dict
from imgsynth.training.data import build_dataset, dataset_name


def photos(tmp_path, n=3, size=(90, 80)):
    rs = np.random.RandomState(0)
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(n):
        Image.fromarray(rs.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8)).save(d / f"p{i}.png")
    return d


def test_flow_is_exact_where_valid():
    rs = np.random.RandomState(1)
    pics = [rs.randint(0, 256, (120, 130, 3)).astype(np.uint8) for _ in range(3)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        c = render_clip(pics, rng, 32, 6)
        assert c.frames.shape == (6, 32, 32, 3) and not c.valid[0].any() and not c.flow[0].any()
        fr = torch.from_numpy(c.frames).permute(0, 3, 1, 2).float()
        for t in range(1, 6):
            warped = flow_warp(fr[t - 1 : t], torch.from_numpy(c.flow[t : t + 1]), align_corners=True)
            diff = (warped - fr[t : t + 1]).abs().amax(1)[0]
            valid = torch.from_numpy(c.valid[t]).bool()
            assert valid.float().mean() > 0.3
            assert diff[valid].max() < 1e-3  # noise photos: any wrong pixel would differ by far more
            # where the frame before does not show the point, the warp is (almost always) wrong
            if (~valid).any():
                assert diff[~valid].mean() > 10


def test_dataset_items(tmp_path):
    cfg = DataConfig(source="clips", path=str(photos(tmp_path)), resolution=16, frames=4, derive="clusters")
    ds = build_dataset(cfg, seed=2)
    assert isinstance(ds, SyntheticClips) and ds.kind == "clips" and ds.channels_a == 3
    a = ds[(5, 1)]
    assert a["a"].shape == (4, 3, 16, 16) and a["b"].shape == (4, 3, 16, 16)
    assert a["flow"].shape == (4, 2, 16, 16) and a["valid"].shape == (4, 1, 16, 16)
    frame = ((a["b"][2] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(((a["a"][2] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy(),
                                  colour_clusters(frame))
    for k in a:
        assert torch.equal(a[k], ds[(5, 1)][k])  # a pure function of (seed, index, epoch)
    assert not torch.equal(a["b"], ds[(5, 2)]["b"])
    test = build_dataset(DataConfig(**{**vars(cfg), "split": "test"}), seed=2)
    assert not torch.equal(a["b"], test[(5, 1)]["b"])
    single = build_dataset(DataConfig(**{**vars(cfg), "frames": 1, "derive": "edges"}))
    assert single.kind == "paired" and single[0]["a"].shape == (1, 16, 16) and single[0]["b"].shape == (3, 16, 16)
    assert "synthetic clips" in dataset_name(cfg)
    with pytest.raises(ConfigError, match="not a folder"):
        build_dataset(DataConfig(source="clips", path=str(tmp_path / "none")))


def recipe(tmp_path, out, steps, **generator):
    return from_dict({
        "run": {"out_dir": str(out), "steps": steps, "seed": 0, "device": "cpu", "log_every": 1,
                "sample_every": 2, "checkpoint_every": 1, "keep_checkpoints": 0, "grid_samples": 2},
        "data": {"source": "clips", "path": str(tmp_path / "photos"), "resolution": 16, "frames": 5,
                 "batch_size": 1, "derive": "gray"},
        "model": {"family": "vid2vid",
                  "generator": {"ngf": 4, "n_downsample": 2, "n_blocks": 2, "n_frames": 3, "norm": "instance_tracked",
                                **generator},
                  "discriminator": {"ndf": 4, "n_layers": 1, "temporal_ndf": 4},
                  "options": {"frames_start": 4, "grow_every": 1, "first_frame_model": "p2p"}},
        "loss": {"gan": "lsgan", "l1": 10.0},
        "export": {"dtype": "fp32", "license": "MIT", "name": "v"},
    })


def test_vid2vid_family_trains_grows_resumes_and_exports(tmp_path, final_state, assert_same):
    from imgsynth.training.export import export
    from imgsynth.training.loop import train

    photos(tmp_path)
    res = train(recipe(tmp_path, tmp_path / "a", 3))
    assert res.step == 3
    assert {"flow", "warp", "weight", "l1", "g", "d"} <= set(res.history[-1])
    assert (tmp_path / "a" / "samples").is_dir()
    # 2 steps + resume + 1 step == 3 steps, bit for bit
    train(recipe(tmp_path, tmp_path / "b", 2))
    train(recipe(tmp_path, tmp_path / "b", 3), resume=True)
    assert_same(final_state(tmp_path / "a")["G"], final_state(tmp_path / "b")["G"])
    export(tmp_path / "a", tmp_path / "exp")
    import json

    cfg = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert cfg["arch"] == "vid2vid" and cfg["task"] == "translate-video"
    assert cfg["io"]["input"] == "gray" and cfg["io"]["first_frame"] == "single"
    assert cfg["io"]["first_frame_model"] == "p2p" and cfg["io"]["normalization"] == "frame"


def test_vid2vid_family_starts_the_flow_search_from_block_matching(tmp_path):
    from imgsynth.models.registry import build_model
    from imgsynth.training.families.vid2vid import Vid2VidFamily
    from imgsynth.training.loop import train

    cfg = {"label_nc": 0, "use_instance": False, "input_nc": 1, "ngf": 4, "n_downsample": 2, "n_blocks": 2}
    searching, plain = build_model("vid2vid", {**cfg, "flow_search": 2}), build_model("vid2vid", cfg)
    for G in (searching, plain):
        Vid2VidFamily().init_weights(G)
    head = searching.scales[0]
    assert not head.flow_out.weight.any() and not head.flow_out.bias.any()
    assert head.weight_out.weight.any() and plain.scales[0].flow_out.weight.any()
    photos(tmp_path)
    res = train(recipe(tmp_path, tmp_path / "s", 2, flow_search=2, search_window=3))
    assert res.step == 2 and res.history[-1]["flow"] > 0


def test_vid2vid_family_trains_around_a_frozen_single_image_card(tmp_path):
    """hallucination/history = first_frame: the card's weights go inside G, frozen; the clip starts from its frames."""
    from imgsynth.engine.loading import load_model
    from imgsynth.training.checkpoint import latest_checkpoint, load_checkpoint
    from imgsynth.training.loop import train

    photos(tmp_path, size=(160, 150))
    raw = recipe(tmp_path, tmp_path / "h", 2, hallucination="first_frame")
    cfg = from_dict({**raw.to_dict(), "data": {**raw.to_dict()["data"], "resolution": 64, "derive": "clusters"},
                     "model": {**raw.to_dict()["model"],
                               "options": {"frames_start": 4, "grow_every": 1, "history": "first_frame",
                                           "first_frame_model": "pix2pix-clusters-photos"}}})
    res = train(cfg)
    assert res.step == 2 and {"flow", "warp", "l1"} <= set(res.history[-1])
    state = load_checkpoint(latest_checkpoint(tmp_path / "h" / "checkpoints"))
    card = load_model("translate", model="pix2pix-clusters-photos", offline=True).model.state_dict()
    for key, value in card.items():  # still the card's weights after two steps
        assert torch.equal(state["G"][f"first_frame.{key}"].float(), value.float()), key
    assert state["generator_config"]["first_frame_arch"] == "pix2pix_unet"
    bad = from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "out_dir": str(tmp_path / "x")},
                     "model": {**cfg.to_dict()["model"], "options": {"history": "first_frame"}}})
    with pytest.raises(ConfigError, match="first_frame_model"):
        train(bad)
