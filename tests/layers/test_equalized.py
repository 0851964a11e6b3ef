"""Equalized-lr conv/linear, pixel norm and minibatch stddev against their defining formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imgsynth.layers.equalized import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    nearest_up_kernel,
    pixel_norm,
)

from tolerance import assert_close


def _randomize(layer: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_conv_keys_and_ganzoo_formula() -> None:
    layer = EqualizedConv2d(5, 7, 3, padding=1)
    assert list(layer.state_dict()) == ["module.weight", "module.bias"]
    _randomize(layer)
    x = torch.randn(2, 5, 6, 6)
    w, b = layer.module.weight, layer.module.bias
    # GAN zoo: the He constant multiplies the bias too.
    expected = (F.conv2d(x, w, b, padding=1)) * math.sqrt(2.0 / (5 * 9))
    assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_conv_stylegan_bias_and_lr_multiplier() -> None:
    layer = EqualizedConv2d(4, 3, 1, gain=1.0, lr_multiplier=0.01, scale_bias=False)
    _randomize(layer)
    x = torch.randn(2, 4, 5, 5)
    w, b = layer.module.weight, layer.module.bias
    expected = F.conv2d(x, w * (1.0 / math.sqrt(4) * 0.01), b * 0.01)
    assert_close(layer(x), expected)


def test_init_keeps_effective_weights_he_scaled() -> None:
    torch.manual_seed(0)
    layer = EqualizedLinear(256, 512, lr_multiplier=0.1, bias_init=0.5, scale_bias=False)
    assert abs(layer.module.weight.std().item() - 10.0) < 0.2  # stored N(0, 1/lr_mul^2)
    assert abs(layer.effective_weight().std().item() - math.sqrt(2 / 256)) < 0.003
    assert_close(layer.effective_bias(), torch.full((512,), 0.5))


def test_linear_formula() -> None:
    layer = EqualizedLinear(6, 4)
    _randomize(layer)
    x = torch.randn(3, 6)
    expected = F.linear(x, layer.module.weight, layer.module.bias) * math.sqrt(2.0 / 6)
    assert_close(layer(x), expected)
    assert list(layer.state_dict()) == ["module.weight", "module.bias"]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_up2_equals_nearest_upsample_then_conv(k: int) -> None:
    layer = EqualizedConv2d(3, 4, k, padding=k // 2, up=2)
    _randomize(layer, seed=k)
    x = torch.randn(2, 3, 5, 7)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    expected = F.conv2d(up, layer.effective_weight(), layer.effective_bias(), padding=k // 2)
    out = layer(x)
    assert out.shape == (2, 4, 10, 14)
    assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert nearest_up_kernel(layer.module.weight).shape == (3, 4, k + 1, k + 1)


def test_up2_rejects_bad_geometry() -> None:
    with pytest.raises(ValueError):
        EqualizedConv2d(3, 4, 4, padding=2, up=2)
    with pytest.raises(ValueError):
        EqualizedConv2d(3, 4, 3, padding=0, up=2)


def test_pixel_norm_formula_inplace_and_grad() -> None:
    x = torch.randn(2, 8, 3, 3) * 3
    expected = x * ((x**2).mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    assert_close(pixel_norm(x), expected)
    assert_close(PixelNorm()(torch.randn(4, 16) * 0 + 2), torch.ones(4, 16))
    y = x.clone()
    out = pixel_norm(y, inplace=True)
    assert out.data_ptr() == y.data_ptr()
    assert_close(y, expected)
    xd = torch.randn(2, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pixel_norm, (xd,))


def test_minibatch_stddev_strided_groups() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 6, 4, 4)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 7, 4, 4)
    assert_close(out[:, :6], x)
    # Sample n is in group n % 2 (groups {0,2,4,6} and {1,3,5,7}); biased std, averaged.
    for g in range(2):
        members = x[g::2]
        std = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert_close(out[g::2, 6], std.expand(4, 4, 4))


def test_minibatch_stddev_channel_slices_and_odd_batch() -> None:
    x = torch.randn(3, 4, 2, 2)  # 3 is not a multiple of 4 -> one group of 3
    out = MinibatchStdDev(group_size=4, num_channels=2)(x)
    assert out.shape == (3, 6, 2, 2)
    std = (x.var(dim=0, unbiased=False) + 1e-8).sqrt()
    assert_close(out[0, 4], std[:2].mean().expand(2, 2))
    assert_close(out[2, 5], std[2:].mean().expand(2, 2))


def test_inference_cache_tracks_parameter_updates() -> None:
    layer = EqualizedConv2d(3, 3, 3, padding=1, up=2)
    x = torch.randn(1, 3, 4, 4)
    layer.eval()
    with torch.no_grad():
        first = layer(x)
        assert layer._prepared()[0] is layer._prepared()[0]  # cached
        layer.module.weight.mul_(2.0)  # bumps the version counter
        second = layer(x)
    bias_part = layer.effective_bias().view(1, 3, 1, 1)
    assert_close(second - bias_part, 2 * (first - bias_part), rtol=1e-5, atol=1e-5)
    # With autograd on, nothing is cached and gradients reach the stored weight.
    layer.train()
    layer(x).sum().backward()
    assert layer.module.weight.grad is not None and "_cache" not in layer.__dict__


def test_bfloat16() -> None:
    layer = EqualizedConv2d(4, 4, 3, padding=1, up=2).to(torch.bfloat16).eval()
    with torch.no_grad():
        out = layer(torch.randn(1, 4, 4, 4, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 4, 8, 8)
    assert MinibatchStdDev()(torch.randn(4, 4, 2, 2, dtype=torch.bfloat16)).dtype == torch.bfloat16
