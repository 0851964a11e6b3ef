"""StyleGAN2-ADA generator / discriminator (imgsynth.models.stylegan2) at tiny configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imgsynth.convert.stylegan2_pkl import config_from_init_kwargs, from_official
from imgsynth.models.registry import build_model, get_model
from imgsynth.models.stylegan2 import (
    StyleGAN2Discriminator,
    downsample2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

from tolerance import assert_close

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "data"
TINY = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "mapping_layers": 2, "channel_base": 64,
        "channel_max": 16, "conv_clamp": 256}


def _randomized(config: dict, seed: int = 0) -> torch.nn.Module:
    """A generator whose noise strengths, biases and w_avg are non-zero (init leaves them 0)."""
    torch.manual_seed(seed)
    g = build_model("stylegan2", config).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith(("noise_strength", ".bias")):
                p.normal_(0, 0.3)
        g.mapping.w_avg.normal_()
    return g


def test_upsample_is_true_convolution_with_gain_4():
    f = setup_filter([1.0, 2.0, 3.0, 4.0])  # asymmetric: catches a flipped filter
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    y = upsample2d(x, f)
    assert y.shape == (1, 1, 8, 8)
    # The impulse lands at (2, 2) of the zero-stuffed image, padding (2, 1): out[1 + t] = 4 f[t].
    expected = torch.zeros(8, 8)
    expected[1:5, 1:5] = 4 * f
    assert_close(y[0, 0], expected)


@pytest.mark.parametrize("taps", [[1.0, 3.0, 3.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
def test_fast_resampling_paths_match_generic_upfirdn2d(taps):
    f = setup_filter(taps)
    x = torch.randn(2, 3, 8, 8)
    assert_close(upsample2d(x, f), upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4.0))
    assert_close(downsample2d(x, f), upfirdn2d(x, f, down=2, padding=(1, 1, 1, 1)))
    # negative padding crops
    assert upfirdn2d(x, f, padding=(-1, 0, 0, -2)).shape == (2, 3, 3, 4)


def test_state_dict_matches_released_key_layouts():
    for name in ("stylegan2ada_ffhq256", "stylegan2ada_ffhq1024"):
        path = DATA / f"{name}.manifest.json"
        if not path.exists():
            pytest.skip(f"{path} not found")
        full = json.loads(path.read_text())["full"]
        config = config_from_init_kwargs(full["options"])
        with torch.device("meta"):
            sd = build_model("stylegan2", config).state_dict()
        assert list(sd) == list(full["state_dict"]), name
        assert all(list(sd[k].shape) == v["shape"] for k, v in full["state_dict"].items()), name


@pytest.mark.parametrize("name", ["stylegan2ada_tiny", "stylegan2ada_tiny_cond"])
def test_mapping_matches_official_ws(name):
    from safetensors.torch import load_file

    if not (DATA / f"{name}.io.safetensors").exists():
        pytest.skip("conformance data not found")
    manifest = json.loads((DATA / f"{name}.manifest.json").read_text())
    io = load_file(DATA / f"{name}.io.safetensors")
    config = config_from_init_kwargs(manifest["options"])  # the official init_kwargs
    g = build_model("stylegan2", config).eval()
    g.load_state_dict(from_official(load_file(DATA / f"{name}.weights.safetensors"), config))
    for case in manifest["cases"]:
        kw = case["kwargs"]
        z, c = io[f"{case['name']}/in/z"], io[f"{case['name']}/in/c"]
        with torch.no_grad():
            ws = g.mapping(z, c, truncation_psi=kw["truncation_psi"], truncation_cutoff=kw.get("truncation_cutoff"))
        ref = io[f"{case['name']}/aux/ws"]
        assert_close(ws, ref, 2e-4)  # check.py's StyleGAN2 tolerance, relative to max|ref|


def test_batch_and_single_paths_agree():
    """Batch 1 uses fused (modulated-weight) convs at high resolution, batches the non-fused form."""
    g = _randomized({**TINY, "img_resolution": 32, "channel_base": 256, "channel_max": 32})
    z = torch.randn(3, 8)
    with torch.no_grad():
        batch = g(z, None)
        single = torch.cat([g(z[i : i + 1], None) for i in range(3)])
    assert batch.shape == (3, 3, 32, 32)
    assert_close(batch, single, atol=1e-4, rtol=1e-4)
    assert batch.is_contiguous()


def test_truncation_and_style_mixing():
    g = _randomized(TINY)
    z = torch.randn(2, 8)
    with torch.no_grad():
        ws = g.mapping(z, None)
        assert ws.shape == (2, g.num_ws, 8)
        assert_close(g.mapping(z, None, truncation_psi=0.0), g.mapping.w_avg.expand_as(ws))
        cut = g.mapping(z, None, truncation_psi=0.0, truncation_cutoff=2)
        assert_close(cut[:, :2], g.mapping.w_avg.expand(2, 2, 8))
        assert_close(cut[:, 2:], ws[:, 2:])
        # Style mixing: coarse ws of sample 0, fine ws of sample 1.
        mixed = ws[0:1].clone()
        mixed[:, 4:] = ws[1:2, 4:]
        img_mixed = g.synthesis(mixed)
        img0, img1 = g.synthesis(ws[0:1]), g.synthesis(ws[1:2])
        assert_close(g.synthesis(ws[0:1].clone()), img0)
    assert not torch.allclose(img_mixed, img0) and not torch.allclose(img_mixed, img1)


def test_noise_modes():
    g = _randomized(TINY)
    z = torch.randn(1, 8)
    with torch.no_grad():
        const, none = g(z, None, noise_mode="const"), g(z, None, noise_mode="none")
        torch.manual_seed(1)
        r1 = g(z, None, noise_mode="random")
        torch.manual_seed(1)
        r2 = g(z, None, noise_mode="random")
        r3 = g(z, None, noise_mode="random")
    assert not torch.allclose(const, none)
    assert_close(r1, r2)
    assert not torch.allclose(r2, r3)
    with pytest.raises(ValueError, match="noise_mode"):
        g(z, None, noise_mode="bogus")


def test_conv_clamp_limits_outputs():
    z = torch.randn(2, 8)
    with torch.no_grad():
        free = _randomized({**TINY, "conv_clamp": None})(z, None)
        img = _randomized({**TINY, "conv_clamp": 0.5})(z, None)
    # toRGB outputs are clamped to +-0.5; the image sums upsampled toRGB outputs of 3 blocks
    # (the [1, 3, 3, 1] upsampling is a convex combination per output pixel).
    assert free.abs().max() > 1.5
    assert img.abs().max() <= 0.5 * 3 + 1e-5


def test_training_backward_and_w_avg_update():
    g = _randomized({**TINY, "c_dim": 3}).train()
    d = StyleGAN2Discriminator(c_dim=3, img_resolution=16, channel_base=64, channel_max=16, conv_clamp=256)
    c = torch.eye(3)[[0, 2]]
    w_avg = g.mapping.w_avg.clone()
    logits = d(g(torch.randn(2, 8), c, noise_mode="random"), c)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert not torch.equal(g.mapping.w_avg, w_avg)
    assert g.synthesis.b16.conv0.weight.grad.abs().sum() > 0
    assert g.mapping.fc0.weight.grad.abs().sum() > 0
    assert d.b16.fromrgb.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_other_architectures(architecture):
    g = _randomized({**TINY, "architecture": architecture})
    keys = set(g.state_dict())
    assert ("synthesis.b8.torgb.weight" in keys) is False
    assert ("synthesis.b8.skip.weight" in keys) is (architecture == "resnet")
    with torch.no_grad():
        assert g(torch.randn(2, 8), None).shape == (2, 3, 16, 16)
    d = StyleGAN2Discriminator(img_resolution=16, channel_base=64, channel_max=16, architecture=architecture)
    assert d(torch.randn(3, 3, 16, 16)).shape == (3, 1)


def test_discriminator_official_keys():
    d = StyleGAN2Discriminator(c_dim=5, img_resolution=32, channel_base=128, channel_max=16)
    keys = list(d.state_dict())
    for k in ("b32.fromrgb.weight", "b32.conv0.weight", "b32.conv1.resample_filter", "b32.skip.weight",
              "b16.conv1.bias", "mapping.embed.weight", "mapping.fc7.weight", "b4.conv.weight",
              "b4.fc.weight", "b4.out.weight"):
        assert k in keys, k
    assert "b16.fromrgb.weight" not in keys and "b32.skip.bias" not in keys
    assert d.state_dict()["b4.out.weight"].shape == (16, 16)  # cmap_dim = channels at 4x4


def test_bfloat16_runs_close_to_float32():
    g = _randomized(TINY)
    z = torch.randn(2, 8)
    with torch.no_grad():
        ref = g(z, None)
        out = g.to(torch.bfloat16)(z, None)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_registry_tiny_and_dummy_inputs():
    spec = get_model("stylegan2")
    assert spec.task == "sample"
    g = spec.build(spec.tiny).eval()
    gen = torch.Generator().manual_seed(0)
    z, c = g.dummy_inputs(2, gen)
    assert z.shape == (2, g.z_dim) and c.shape == (2, 0)
    with torch.no_grad():
        assert g(z, c).shape == (2, g.img_channels, g.img_resolution, g.img_resolution)
    cond = build_model("stylegan2", {**TINY, "c_dim": 4})
    _, c = cond.dummy_inputs(3, gen)
    assert torch.equal(c.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="conditional"):
        cond(torch.randn(1, 8))
