"""StyleGAN v1 generator (imgsynth.models.stylegan) against the paper's formulas, at tiny configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imgsynth.models.registry import build_model, get_model

from tolerance import assert_close

TINY = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "mapping_layers": 2, "mapping_features": 8,
        "fmap_base": 32, "fmap_max": 8}


def _randomized(config: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    g = build_model("stylegan", config).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith(("noise_strength", "bias", "const")):
                p.normal_(0, 0.5)
        g.mapping.w_avg.normal_()
    return g


def _reference_layer(layer, x, w, up: bool, noise: torch.Tensor | None) -> torch.Tensor:
    """nearest x2 -> conv (He scale sqrt2/sqrt(fan_in)) -> [1,2,1] blur -> noise -> bias -> lrelu -> IN -> AdaIN."""
    weight = layer.conv.module.weight
    if up:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
    x = F.conv2d(x, weight * math.sqrt(2) / math.sqrt(weight[0].numel()), padding=1)
    if up:
        k = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
        x = F.conv2d(x, k.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])
    if noise is not None:
        x = x + noise * layer.noise_strength.reshape(1, -1, 1, 1)
    x = F.leaky_relu(x + layer.bias.reshape(1, -1, 1, 1), 0.2)
    x = F.instance_norm(x, eps=1e-8)
    sw = layer.style.module.weight / math.sqrt(w.shape[1])
    style = w @ sw.t() + layer.style.module.bias
    c = x.shape[1]
    return x * (style[:, :c, None, None] + 1) + style[:, c:, None, None]


@pytest.mark.parametrize("block,up", [("conv0_up", True), ("conv1", False)])
def test_layer_matches_paper_formula(block, up):
    g = _randomized(TINY)
    layer = getattr(g.synthesis.b16, block)
    cin = layer.conv.module.weight.shape[1]
    x = torch.randn(2, cin, 8 if up else 16, 8 if up else 16)
    w = torch.randn(2, 8)
    with torch.no_grad():
        ref = _reference_layer(layer, x, w, up, layer.noise_const[None, None])
        assert_close(layer(x, w, "const"), ref, atol=1e-4, rtol=1e-4)
        ref_none = _reference_layer(layer, x, w, up, None)
        assert_close(layer(x, w, "none"), ref_none, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ref, ref_none)


def test_mapping_formula_and_truncation():
    g = _randomized({**TINY, "c_dim": 3})
    z, c = torch.randn(2, 8), torch.eye(3)[[0, 2]]
    x = torch.cat([z, c @ g.mapping.embed.weight.t()], dim=1)
    x = x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)
    for i in range(2):
        fc = getattr(g.mapping, f"fc{i}").module
        x = F.leaky_relu(x @ (fc.weight * math.sqrt(2) / math.sqrt(fc.weight.shape[1]) * 0.01).t()
                         + fc.bias * 0.01, 0.2)
    with torch.no_grad():
        ws = g.mapping(z, c)
        assert_close(ws, x.unsqueeze(1).expand(2, g.num_ws, 8), atol=1e-5, rtol=1e-5)
        trunc = g.mapping(z, c, truncation_psi=0.7, truncation_cutoff=4)
    assert_close(trunc[:, :4], g.mapping.w_avg + 0.7 * (ws[:, :4] - g.mapping.w_avg))
    assert_close(trunc[:, 4:], ws[:, 4:])


def test_adain_removes_input_scale():
    """Instance norm before the style: scaling a layer's input by a positive constant changes nothing
    when no noise or bias is added (lrelu is positively homogeneous)."""
    g = _randomized(TINY)
    layer = g.synthesis.b8.conv1
    with torch.no_grad():
        layer.bias.zero_()
        x, w = torch.randn(1, 8, 8, 8), torch.randn(1, 8)
        assert_close(layer(x, w, "none"), layer(3.7 * x, w, "none"), atol=1e-4, rtol=1e-4)


def test_generator_shapes_mixing_noise_and_batch():
    g = _randomized(TINY)
    assert g.num_ws == 6
    z = torch.randn(3, 8)
    with torch.no_grad():
        img = g(z)
        single = torch.cat([g(z[i : i + 1]) for i in range(3)])
        ws = g.mapping(z)
        mixed = ws[0:1].clone()
        mixed[:, 2:] = ws[1:2, 2:]
        img_mixed = g.synthesis(mixed)
        const0 = g.synthesis.b4.const.clone()
        none = g(z, noise_mode="none")
        torch.manual_seed(0)
        r1 = g(z, noise_mode="random")
        torch.manual_seed(0)
        r2 = g(z, noise_mode="random")
    assert img.shape == (3, 3, 16, 16) and img.is_contiguous()
    assert_close(img, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(img_mixed, img[0:1]) and not torch.allclose(img_mixed, img[1:2])
    assert torch.equal(const0, g.synthesis.b4.const)  # in-place epilogue leaves the constant alone
    assert not torch.allclose(none, img)
    assert_close(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        g(z, noise_mode="loud")


def test_released_ffhq_config_layout():
    with torch.device("meta"):
        g = build_model("stylegan")
    assert g.num_ws == 18
    sd = g.state_dict()
    assert sd["synthesis.b4.const"].shape == (512, 4, 4)
    assert sd["synthesis.b64.conv1.conv.module.weight"].shape == (256, 256, 3, 3)
    assert sd["synthesis.b1024.conv1.conv.module.weight"].shape == (16, 16, 3, 3)
    assert sd["synthesis.b1024.conv1.noise_const"].shape == (1024, 1024)
    assert sd["synthesis.torgb.module.weight"].shape == (3, 16, 1, 1)


def test_training_backward_and_bfloat16():
    g = _randomized({**TINY, "c_dim": 2}).train()
    w_avg = g.mapping.w_avg.clone()
    g(torch.randn(2, 8), torch.eye(2), noise_mode="random").square().mean().backward()
    assert not torch.equal(w_avg, g.mapping.w_avg)
    assert g.synthesis.b16.conv0_up.conv.module.weight.grad.abs().sum() > 0
    assert g.mapping.embed.weight.grad.abs().sum() > 0
    g = _randomized(TINY)
    z = torch.randn(2, 8)
    with torch.no_grad():
        ref = g(z)
        out = g.to(torch.bfloat16)(z)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_registry_tiny_and_dummy_inputs():
    spec = get_model("stylegan")
    assert spec.task == "sample"
    g = spec.build({**spec.tiny, "c_dim": 4}).eval()
    z, c = g.dummy_inputs(2, torch.Generator().manual_seed(0))
    assert torch.equal(c.sum(1), torch.ones(2))
    with torch.no_grad():
        assert g(z, c).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="conditional"):
        g(z)
