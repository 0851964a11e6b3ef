"""NVIDIA/vid2vid generator: the step API, history, foreground mask, first frames, norm statistics."""

from __future__ import annotations

import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.layers.label_maps import one_hot
from imgsynth.models.registry import build_model
from imgsynth.models.vid2vid import frame_statistics

CFG = dict(label_nc=4, ngf=4, n_downsample=1, n_blocks=2, n_blocks_local=1, n_frames=3)


def _window(gen, n=1, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = [gen.encode_frame(torch.randint(0, gen.label_nc, (n, 1, side, side), generator=g),
                               torch.randint(0, 3, (n, 1, side, side), generator=g)) for _ in range(gen.n_frames)]
    return torch.cat(frames, 1)


def test_encode_frame_is_one_hot_plus_edges():
    gen = build_model("vid2vid", CFG)
    label = torch.tensor([[[[0, 1], [2, 3]]]])
    x = gen.encode_frame(label, torch.zeros_like(label))
    assert x.shape == (1, 5, 2, 2) and torch.equal(x[:, :4], one_hot(label, 4)) and not x[:, 4].any()
    with pytest.raises(ValueError, match="instance map"):
        gen.encode_frame(label)


def test_history_slides_per_scale():
    gen = build_model("vid2vid", {**CFG, "n_scales": 2}).eval()
    firsts = [torch.rand(1, 3, 16, 16) * 2 - 1 for _ in range(2)]
    hist = gen.initial_history(firsts)
    assert [tuple(h.shape) for h in hist] == [(1, 6, 8, 8), (1, 6, 16, 16)]
    with torch.no_grad():
        out = gen(_window(gen), hist)
    assert out.image.shape == (1, 3, 16, 16) and out.flow.shape == (1, 2, 16, 16)
    assert [s.image.shape[-1] for s in out.scales] == [8, 16] and out.scales[-1].image is out.image
    new = gen.update_history(hist, out)
    assert torch.equal(new[1][:, :3], hist[1][:, 3:]) and torch.equal(new[1][:, 3:], out.image)
    assert torch.equal(new[0][:, 3:], out.scales[0].image)
    with pytest.raises(ValueError, match="2 scale"):
        gen(_window(gen), hist[1])
    with pytest.raises(ValueError, match="first frames"):
        gen.initial_history(firsts[:1])


def test_use_raw_only_skips_the_warp_and_blend():
    gen = build_model("vid2vid", CFG).eval()
    hist = gen.zero_history(1, 16, 16)
    with torch.no_grad():
        raw = gen(_window(gen), hist, use_raw_only=True)
        blended = gen(_window(gen), hist)
    assert torch.equal(raw.image, raw.raw) and raw.flow is not None
    assert not torch.equal(blended.image, blended.raw)
    assert torch.allclose(blended.image, blended.raw * blended.weight + 0 * (1 - blended.weight), atol=1e-6)


def test_foreground_replaces_the_masked_pixels():
    gen = build_model("vid2vid", {**CFG, "fg": True, "fg_labels": [1, 2]}).eval()
    x = _window(gen)
    mask = gen.fg_mask(x)
    last = x[:, 2 * gen.frame_nc:]
    assert torch.equal(mask, (last[:, 1:2] + last[:, 2:3]).clamp(0, 1))
    with torch.no_grad():
        a = gen(x, gen.zero_history(1, 16, 16))
    assert a.image.shape == (1, 3, 16, 16)
    with pytest.raises(ConfigError):
        build_model("vid2vid", {**CFG, "fg": True, "fg_labels": [9]})


def test_frame_statistics_uses_batch_stats_and_keeps_running_ones():
    gen = build_model("vid2vid", CFG).eval()
    x, hist = _window(gen), gen.zero_history(1, 16, 16)
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    with torch.no_grad(), frame_statistics(gen):
        stats = gen(x, hist).image
    assert all(torch.equal(v, before[k]) for k, v in gen.state_dict().items())
    assert not gen.training and not any(m.training for m in gen.modules())
    ref = build_model("vid2vid", CFG)
    ref.load_state_dict(before)
    with torch.no_grad():
        want = ref.train()(x, hist).image
        running = ref.eval()(x, hist).image
    assert torch.allclose(stats, want, atol=1e-6) and not torch.allclose(stats, running, atol=1e-3)


def test_tracked_instance_norm_and_first_frame_module():
    first = {"label_nc": 4, "use_instance": False, "ngf": 4, "n_downsample_global": 1, "n_blocks_global": 1,
             "norm": "instance_tracked"}
    gen = build_model("vid2vid", {**CFG, "norm": "instance_tracked", "first_frame_arch": "pix2pixhd_global",
                                  "first_frame_config": first}).eval()
    assert any(k.endswith("running_mean") for k in gen.state_dict())
    assert not any(k.endswith("norm1.weight") for k in gen.state_dict())
    label = torch.randint(0, 4, (1, 1, 16, 16))
    with torch.no_grad():
        img = gen.first_frame(one_hot(label, 4))
    assert img.shape == (1, 3, 16, 16) and img.abs().max() <= 1


def test_flow_search_starts_from_the_block_matching_flow():
    from imgsynth.layers.warp import block_match

    cfg = {**CFG, "label_nc": 0, "use_instance": False, "input_nc": 3, "flow_search": 2, "search_window": 3}
    gen = build_model("vid2vid", cfg).eval()
    plain = build_model("vid2vid", {**cfg, "flow_search": 0})
    # the official layout is unchanged without the search; with it only the two heads widen by 5x5 + 3
    assert gen.scales[0].flow_out.in_channels == plain.scales[0].flow_out.in_channels + 28
    assert gen.scales[0].weight_out.in_channels == plain.scales[0].weight_out.in_channels + 28
    assert set(gen.state_dict()) == set(plain.state_dict())
    torch.nn.init.zeros_(gen.scales[0].flow_out.weight)
    torch.nn.init.zeros_(gen.scales[0].flow_out.bias)
    g = torch.Generator().manual_seed(1)
    frames = [torch.rand(1, 3, 16, 16, generator=g) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        out = gen(torch.cat(frames, 1), gen.initial_history(frames[:2]))
    _, prior, _ = block_match(frames[2], frames[1], 2, window=3, temperature=0.02)
    assert torch.allclose(out.flow, prior, atol=1e-5)
    with torch.no_grad():
        gen.scales[0].flow_out.bias.fill_(1.0)  # the head's output is a correction of a tenth of a pixel per unit
        moved = gen(torch.cat(frames, 1), gen.initial_history(frames[:2]))
    assert torch.allclose(moved.flow, prior + 0.1, atol=1e-5)
    for bad in ({"flow_search": -1}, {"flow_search": 2, "search_window": 4}, {"flow_search": 2, "search_temperature": 0}):
        with pytest.raises(ConfigError, match="flow_search"):
            build_model("vid2vid", {**cfg, **bad})


def test_first_frame_hallucination_takes_the_single_image_generator_output():
    first = {"input_nc": 3, "output_nc": 3, "num_downs": 5, "ngf": 4, "norm": "instance", "use_dropout": True}
    cfg = {**CFG, "label_nc": 0, "use_instance": False, "input_nc": 3, "norm": "instance_tracked",
           "first_frame_arch": "pix2pix_unet", "first_frame_config": first, "hallucination": "first_frame"}
    gen = build_model("vid2vid", cfg).train()
    assert gen.scales[0].image_decoder is None and not any("image_decoder" in k for k in gen.state_dict())
    assert gen.training and not gen.first_frame.training  # dropout off: the single-image model as at test time
    g = torch.Generator().manual_seed(2)
    frames = [torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        out = gen(torch.cat(frames, 1), gen.initial_history(frames[:2]))
        single = gen.first_frame(frames[2])
    assert torch.equal(out.raw, single)
    with torch.no_grad():
        assert torch.equal(gen.single_image(frames[2]), single)
    warped = out.image - out.raw * out.weight
    assert not torch.allclose(out.image, out.raw)  # the blend of the warp and the single-image frame
    assert warped.abs().max() > 0
    with pytest.raises(ConfigError, match="first_frame_arch"):
        build_model("vid2vid", {**cfg, "first_frame_arch": None, "first_frame_config": None})
    with pytest.raises(ConfigError, match="hallucination"):
        build_model("vid2vid", {**cfg, "hallucination": "other"})
