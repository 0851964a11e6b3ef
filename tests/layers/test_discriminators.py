"""PatchGAN and multi-scale discriminators: output grids, features, options, gradient flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.layers.discriminators import MultiscaleDiscriminator, NLayerDiscriminator

from tolerance import assert_close


def _conv_out(size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - 4) // stride + 1


def test_pix2pix_patchgan_gives_30x30_logits_at_256() -> None:
    # the 70x70 PatchGAN: 256 -> 128 -> 64 -> 32 -> 31 -> 30 with padding 1
    with torch.device("meta"):
        d = NLayerDiscriminator(6, ndf=64, n_layers=3)
        y = d(torch.empty(1, 6, 256, 256))
    assert y.shape == (1, 1, 30, 30)
    assert [l[0].out_channels for l in d.layers] == [64, 128, 256, 512, 1]


@pytest.mark.parametrize("padding,n_layers", [(1, 3), (2, 3), (2, 2)])
def test_output_grid_follows_conv_arithmetic(padding: int, n_layers: int) -> None:
    d = NLayerDiscriminator(3, ndf=4, n_layers=n_layers, padding=padding)
    size = 40
    for _ in range(n_layers):
        size = _conv_out(size, 2, padding)
    size = _conv_out(_conv_out(size, 1, padding), 1, padding)
    assert d(torch.randn(2, 3, 40, 40)).shape == (2, 1, size, size)


def test_features_for_feature_matching() -> None:
    d = NLayerDiscriminator(3, ndf=4, n_layers=3)
    x = torch.randn(1, 3, 32, 32)
    feats = d(x, return_features=True)
    assert len(feats) == 3 + 2
    assert_close(feats[-1], d(x))
    assert [f.shape[1] for f in feats] == [4, 8, 16, 32, 1]


def test_norm_placement_and_biases() -> None:
    d = NLayerDiscriminator(3, ndf=4, n_layers=3, norm="instance")
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in d.layers[0])
    assert all(isinstance(d.layers[i][1], nn.InstanceNorm2d) for i in (1, 2, 3))
    # a bias only where no normalisation follows
    assert [l[0].bias is not None for l in d.layers] == [True, False, False, False, True]
    plain = NLayerDiscriminator(3, ndf=4, norm="none")
    assert all(l[0].bias is not None for l in plain.layers)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in plain.modules())


def test_channel_cap() -> None:
    d = NLayerDiscriminator(3, ndf=8, n_layers=4, max_channels=32)
    assert [l[0].out_channels for l in d.layers] == [8, 16, 32, 32, 32, 1]


def test_spectral_norm_wraps_every_conv() -> None:
    d = NLayerDiscriminator(3, ndf=4, norm="instance", spectral_norm=True)
    keys = d.state_dict().keys()
    assert sum(k.endswith("parametrizations.weight.original") for k in keys) == len(d.layers)
    d(torch.randn(1, 3, 32, 32))  # runs a power iteration in train mode


def test_multiscale_pyramid_and_outputs() -> None:
    d = MultiscaleDiscriminator(3, num_D=3, ndf=4, n_layers=2)
    x = torch.randn(2, 3, 64, 64)
    outs = d(x)
    assert len(outs) == 3
    # scale i sees the input average-pooled i times (64 -> 32 -> 16)
    sizes = [64, 32, 16]
    for y, s in zip(outs, sizes):
        for _ in range(2):
            s = _conv_out(s, 2, 2)
        s = _conv_out(_conv_out(s, 1, 2), 1, 2)
        assert y.shape == (2, 1, s, s)
    pooled = torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    assert_close(outs[1], d.scales[1](pooled))
    feats = d(x, return_features=True)
    assert len(feats) == 3 and all(len(f) == 2 + 2 for f in feats)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_gradients_flow_to_parameters_and_input(norm: str) -> None:
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(3, num_D=2, ndf=4, n_layers=2, norm=norm, spectral_norm=norm == "instance")
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    loss = sum(o.mean() for o in d(x)) + sum(f.abs().mean() for fs in d(x, return_features=True) for f in fs[:-1])
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="norm"):
        NLayerDiscriminator(3, norm="group")
    with pytest.raises(ConfigError, match="n_layers"):
        NLayerDiscriminator(3, n_layers=0)
    with pytest.raises(ConfigError, match="num_D"):
        MultiscaleDiscriminator(3, num_D=0)
