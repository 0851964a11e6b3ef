"""PartialConv2d and the renormalisation maths on hand-made masks (Liu et al. 2018, Eq. 1-2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imgsynth.errors import InputError
from imgsynth.layers.partial_conv import (
    PartialConv2d,
    apply_ratio,
    mask_ratio,
    renormalize,
    window_sum,
)

from tolerance import assert_close


def _layer(cin=1, cout=2, k=3, bias=True, multi=False, variant="nvidia", **kw) -> PartialConv2d:
    torch.manual_seed(0)
    layer = PartialConv2d(cin, cout, k, bias=bias, multi_channel=multi, variant=variant, **kw)
    with torch.no_grad():
        if bias:
            layer.bias.normal_()
    return layer


def test_state_dict_holds_only_weight_and_bias() -> None:
    assert set(_layer().state_dict()) == {"weight", "bias"}
    assert set(_layer(bias=False).state_dict()) == {"weight"}


@pytest.mark.parametrize("variant", ["nvidia", "naoto"])
def test_all_valid_window_is_plain_conv(variant: str) -> None:
    layer = _layer(cin=2, cout=3, multi=True, variant=variant)
    x = torch.randn(1, 2, 6, 7)
    out, update = layer(x, torch.ones(1, 2, 6, 7))
    plain = F.conv2d(x, layer.weight, layer.bias, padding=0)
    if variant == "naoto":
        # naoto's rule averages over the valid taps: a full window is the plain conv / (Cin*k*k)
        plain = (plain - layer.bias.view(1, -1, 1, 1)) / 18 + layer.bias.view(1, -1, 1, 1)
    assert_close(out, plain)
    assert torch.equal(update, torch.ones_like(update))


@pytest.mark.parametrize("variant", ["nvidia", "naoto"])
@pytest.mark.parametrize("bias", [True, False])
def test_all_hole_window_gives_zero_output_and_mask(variant: str, bias: bool) -> None:
    layer = _layer(bias=bias, variant=variant, padding=1)
    x = torch.randn(1, 1, 7, 7)
    mask = torch.ones(1, 1, 7, 7)
    mask[..., 1:6, 1:6] = 0  # the 3x3 windows centred on 2..4 see only holes
    out, update = layer(x, mask)
    assert torch.equal(out[..., 2:5, 2:5], torch.zeros(1, 2, 3, 3))
    assert torch.equal(update[..., 2:5, 2:5], torch.zeros(1, 1, 3, 3))
    assert bool((update[..., 0, :] == 1).all())


def test_partial_window_is_scaled_by_the_ratio() -> None:
    layer = _layer(cin=1, cout=1, k=3)
    x = torch.arange(9.0).view(1, 1, 3, 3) + 1
    mask = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]]).view(1, 1, 3, 3)  # 4 valid taps
    out, update = layer(x, mask)
    w, b = layer.weight.view(-1), layer.bias
    expected = (w * (x * mask).view(-1)).sum() * 9 / 4 + b
    assert_close(out.view(1), expected.view(1))
    assert update.item() == 1.0


def test_partial_window_naoto_divides_by_the_valid_count() -> None:
    layer = _layer(cin=2, cout=1, k=3, multi=True, variant="naoto")
    x = torch.randn(1, 2, 3, 3)
    mask = torch.zeros(1, 2, 3, 3)
    mask[0, 0, 0, :] = 1
    mask[0, 1, 2, 2] = 1  # 4 valid taps over both channels
    out, update = layer(x, mask)
    expected = (layer.weight * x * mask).sum() / 4 + layer.bias
    assert_close(out.view(1), expected.view(1))
    assert update.shape == (1, 1, 1, 1) and update.item() == 1.0


def test_multi_channel_counts_every_channel() -> None:
    layer = _layer(cin=2, cout=3, k=3, multi=True)
    x = torch.randn(1, 2, 3, 3)
    mask = torch.ones(1, 2, 3, 3)
    mask[0, 0] = 0  # 9 of 18 taps valid
    out, update = layer(x, mask)
    raw = F.conv2d(x * mask, layer.weight)
    assert_close(out, raw * 2 + layer.bias.view(1, -1, 1, 1))
    assert update.shape == (1, 3, 1, 1)


def test_one_channel_mask_on_multi_channel_layer_equals_repeated_mask() -> None:
    layer = _layer(cin=3, cout=4, multi=True, padding=1)
    x = torch.randn(2, 3, 8, 9)
    mask = (torch.rand(2, 1, 8, 9) > 0.5).float()
    a, ua = layer(x, mask)
    b, ub = layer(x, mask.expand(-1, 3, -1, -1))
    assert_close(a, b)
    assert torch.equal(ua, ub)


def test_mask_none_is_partial_padding_and_caches_per_shape() -> None:
    layer = _layer(cin=1, cout=2, padding=1)
    x = torch.randn(1, 1, 5, 6)
    out, update = layer(x)
    assert update.shape == (1, 1, 5, 6) and bool((update == 1).all())
    raw = F.conv2d(x, layer.weight, None, padding=1)
    b = layer.bias.view(1, -1, 1, 1)
    assert_close(out[..., 1:-1, 1:-1], (raw + b)[..., 1:-1, 1:-1])  # full windows
    assert_close(out[..., 0, 0], (raw * 9 / 4 + b)[..., 0, 0])  # corner: 4 taps

    # an explicit mask of the same shape replaces the cache; later mask=None calls reuse it
    # (x not multiplied) until the input shape changes
    mask = (torch.rand(1, 1, 5, 6) > 0.5).float()
    layer(x, mask)
    cached, cached_update = layer(x)
    ratio, upd = mask_ratio(window_sum(mask, 3, 1, 1), 9)
    assert_close(cached, apply_ratio(raw, ratio, upd, layer.bias))
    assert torch.equal(cached_update, upd)
    fresh, _ = layer(torch.randn(1, 1, 5, 7))
    assert fresh.shape == (1, 2, 5, 7)
    again, _ = layer(x)
    assert_close(again, out)


def test_mask_none_multi_channel_update_shape() -> None:
    layer = _layer(cin=2, cout=3, multi=True, padding=1)
    _, update = layer(torch.randn(4, 2, 5, 5))
    assert update.shape == (4, 3, 5, 5)


def test_return_mask_false_returns_only_the_output() -> None:
    layer = _layer(return_mask=False, padding=1)
    out = layer(torch.randn(1, 1, 4, 4), torch.ones(1, 1, 4, 4))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 4, 4)


def test_gradients_flow_to_weight_and_bias_not_to_holes() -> None:
    layer = _layer(cin=2, cout=3, multi=True, padding=1)
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    mask = torch.ones(1, 2, 6, 6)
    mask[..., :3, :3] = 0
    out, _ = layer(x, mask)
    out.square().sum().backward()
    assert layer.weight.grad is not None and bool(layer.weight.grad.abs().sum() > 0)
    assert layer.bias.grad is not None and bool(torch.isfinite(layer.bias.grad).all())
    assert bool((x.grad[..., :3, :3] == 0).all()) and bool(x.grad[..., 3:, 3:].abs().sum() > 0)


def test_wrong_mask_channels_raise_input_error() -> None:
    with pytest.raises(InputError, match="1 channel"):
        _layer(cin=2)(torch.randn(1, 2, 4, 4), torch.ones(1, 2, 4, 4))
    with pytest.raises(InputError, match="matching the input"):
        _layer(cin=1)(torch.randn(1, 1, 4, 4), torch.ones(1, 1, 4, 5))


def test_renormalize_with_a_mask_per_window() -> None:
    """The panoptic-aware use: every window has its own mask (here: id == centre id)."""
    torch.manual_seed(1)
    cin, cout, k = 2, 3, 3
    weight, bias = torch.randn(cout, cin, k, k), torch.randn(cout)
    x = torch.randn(1, cin, 5, 6)
    ids = torch.randint(0, 3, (1, 1, 5, 6)).float()
    # per-window mask: 1 where the tap's id equals the window centre's id (zero padding = hole)
    cols = F.unfold(x, k, padding=1).view(1, cin, k * k, -1)
    id_cols = F.unfold(ids + 1, k, padding=1).view(1, 1, k * k, -1)  # +1: padding (0) never matches
    centre = (ids + 1).view(1, 1, 1, -1)
    m = (id_cols == centre).float()
    raw = torch.einsum("ock,nckp->nop", weight.view(cout, cin, k * k), cols * m).view(1, cout, 5, 6)
    s = (m.sum(2) * cin).view(1, 1, 5, 6)
    out, update = renormalize(raw, s, cin * k * k, bias)
    # reference, one output position at a time
    for p in range(30):
        i, j = divmod(p, 6)
        taps = (cols[0, :, :, p] * m[0, :, :, p])
        ref = (weight.view(cout, cin, -1) * taps).sum((1, 2)) * (cin * k * k) / s[0, 0, i, j] + bias
        assert_close(out[0, :, i, j], ref)
    assert bool((update == 1).all())  # the centre always matches itself


def test_mask_ratio_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match="variant"):
        mask_ratio(torch.ones(1), 9, "other")  # type: ignore[arg-type]


def test_bfloat16_follows_the_parameters() -> None:
    layer = _layer(cin=2, cout=3, multi=True, padding=1)
    x = torch.randn(1, 2, 6, 6)
    mask = (torch.rand(1, 2, 6, 6) > 0.3).float()
    ref, _ = layer(x, mask)
    out, update = layer.to(torch.bfloat16)(x.bfloat16(), mask.bfloat16())
    assert out.dtype == torch.bfloat16 and update.dtype == torch.bfloat16
    assert_close(out.float(), ref, atol=0.1, rtol=0.05)
