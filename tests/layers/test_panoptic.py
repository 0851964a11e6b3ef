"""Panoptic-aware convolution and upsampling (Dundar et al. 2020): every rule on hand-made maps,
and the vectorised layers against literal per-pixel transcriptions of the definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.layers.panoptic import (
    PASSES,
    PanopticAwareConv2d,
    PanopticAwareUpsample,
    panoptic_conv2d,
    panoptic_windows,
    resize_ids,
    upsample_sources,
)

from tolerance import assert_close


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ literal references (tests only)


def literal_conv(x, weight, bias, pan, stride=1, padding=0, dilation=1):
    """Sec. 3.1 transcribed window by window in float64: m = [P == P(centre)], padding never
    matches, out = W^T(X*M) * sum(1)/sum(M) + b if sum(M) > 0 else 0."""
    n_, c_, h, w = x.shape
    o, _, k, _ = weight.shape
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out = torch.zeros(n_, o, ho, wo, dtype=torch.float64)
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                cy = oy * stride - padding + dilation * (k // 2)
                cx = ox * stride - padding + dilation * (k // 2)
                centre_in = 0 <= cy < h and 0 <= cx < w
                acc, s = torch.zeros(o, dtype=torch.float64), 0
                for dy in range(k):
                    for dx in range(k):
                        iy, ix = oy * stride - padding + dy * dilation, ox * stride - padding + dx * dilation
                        if centre_in and 0 <= iy < h and 0 <= ix < w and pan[n, iy, ix] == pan[n, cy, cx]:
                            s += 1
                            acc += weight[:, :, dy, dx].double() @ x[n, :, iy, ix].double()
                if s > 0:
                    out[n, :, oy, ox] = acc * (k * k) / s + (0 if bias is None else bias.double())
    return out


def literal_sources(p_low, p_high, clamp_border=False):
    """Algorithm 1 transcribed pixel by pixel: four passes over the whole grid, each filling
    only unfilled pixels whose source id matches. ``clamp_border`` clamps sources past the
    border instead of treating them as non-matching."""
    n_, h, w = p_low.shape
    index = torch.zeros(n_, 2 * h, 2 * w, dtype=torch.long)
    filled = torch.zeros(n_, 2 * h, 2 * w, dtype=torch.bool)
    for a, b in PASSES:
        for n in range(n_):
            for i in range(2 * h):
                for j in range(2 * w):
                    si, sj = i // 2 + a, j // 2 + b
                    if clamp_border:
                        si, sj = min(si, h - 1), min(sj, w - 1)
                    elif si >= h or sj >= w:
                        continue
                    if not filled[n, i, j] and p_high[n, i, j] == p_low[n, si, sj]:
                        filled[n, i, j] = True
                        index[n, i, j] = si * w + sj
    return index, filled


def blocky_ids(n, h, w, cell, values, seed):
    g = _gen(seed)
    ids = torch.randint(0, values, (n, -(-h // cell), -(-w // cell)), generator=g)
    return ids.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]


# ------------------------------------------------------------------ panoptic-aware convolution


def test_window_mask_on_a_hand_made_map():
    # two segments (7 and 3); the window centred on (1, 1) with 'same' padding
    pan = torch.tensor([[[7, 7, 3],
                         [7, 7, 3],
                         [3, 3, 3]]])
    win = panoptic_windows(pan, 3, padding=1)
    assert win.mask.shape == (1, 9, 3, 3)
    assert win.mask[0, :, 1, 1].int().tolist() == [1, 1, 0, 1, 1, 0, 0, 0, 0]
    # corner (0, 0): the 5 padding taps never match, even though padding "is" 0-valued
    assert win.mask[0, :, 0, 0].int().tolist() == [0, 0, 0, 0, 1, 1, 0, 1, 1]
    # centre (2, 2) is id 3: its window's top-middle (1, 2), middle-left (2, 1) and itself
    assert win.mask[0, :, 2, 2].int().tolist() == [0, 1, 0, 1, 1, 0, 0, 0, 0]
    assert win.count[0, 0].tolist() == [[4, 4, 2], [4, 4, 4], [2, 4, 3]]


def test_padding_never_equals_the_centre_id_even_when_ids_are_zero():
    pan = torch.zeros(1, 4, 5, dtype=torch.long)
    win = panoptic_windows(pan, 3, padding=1)
    assert win.count[0, 0, 0].tolist() == [4, 6, 6, 6, 4]
    assert win.count[0, 0, 1].tolist() == [6, 9, 9, 9, 6]
    conv = PanopticAwareConv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 4, 5, generator=_gen())
    plain_raw = F.conv2d(x, conv.weight, None, padding=1)
    y = conv(x, pan)
    # border windows are renormalised by sum(1)/sum(M) = 9/S; padding taps already read 0
    assert_close(y, plain_raw * (9 / win.count) + conv.bias.view(1, -1, 1, 1))


@pytest.mark.parametrize("k,stride,padding,dilation", [
    (3, 1, 1, 1), (3, 2, 1, 1), (5, 1, 2, 1), (3, 1, 2, 2), (3, 1, 0, 1), (1, 1, 0, 1), (3, 2, 0, 2),
])
def test_matches_the_literal_definition(k, stride, padding, dilation):
    g = _gen(1)
    x = torch.randn(2, 3, 9, 10, generator=g)
    pan = torch.randint(0, 3, (2, 9, 10), generator=g) * 1000 + 5  # arbitrary id values
    conv = PanopticAwareConv2d(3, 4, k, stride, padding, dilation)
    expected = literal_conv(x, conv.weight, conv.bias, pan, stride, padding, dilation)
    assert_close(conv(x, pan).double(), expected, rtol=1e-5, atol=1e-5)
    # integer labels stand for their one-hot map, same numbers
    labels = torch.randint(0, 3, (2, 9, 10), generator=g)
    onehot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    expected = literal_conv(onehot, conv.weight, conv.bias, pan, stride, padding, dilation)
    assert_close(conv(labels, pan).double(), expected, rtol=1e-5, atol=1e-5)


def unfold_reference(x, weight, bias, pan, padding):
    """The definition with F.unfold: every window's taps and ids side by side (stride 1)."""
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    cols = F.unfold(x, k, padding=padding).view(n, c, k * k, -1)
    ids = F.unfold(F.pad(pan.double().unsqueeze(1) + 1, (padding,) * 4), k).view(n, k * k, -1)  # padding -> 0
    m = (ids == ids[:, k * k // 2 : k * k // 2 + 1]) & (ids > 0)
    s = m.sum(1, keepdim=True).double()
    raw = weight.reshape(o, -1).double() @ (cols.double() * m.unsqueeze(1)).reshape(n, c * k * k, -1)
    out = torch.where(s > 0, raw * (k * k) / s.clamp(min=1) + bias.double().view(1, -1, 1), 0.0)
    return out.view(n, o, h + 2 * padding - k + 1, w + 2 * padding - k + 1)


def test_many_boundary_windows_in_chunks():
    # every window touches another segment: more windows to recompute than one chunk holds
    g = _gen(11)
    x = torch.randn(2, 3, 70, 80, generator=g).contiguous(memory_format=torch.channels_last)
    pan = torch.randint(0, 2, (2, 70, 80), generator=g)
    conv = PanopticAwareConv2d(3, 4, 3, padding=1)
    assert conv.windows(pan).partial.sum() > 8192
    expected = unfold_reference(x, conv.weight, conv.bias, pan, 1)
    assert_close(conv(x, pan).double(), expected, rtol=1e-5, atol=1e-5)
    labels = torch.randint(0, 3, (2, 70, 80), generator=g)
    onehot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    expected = unfold_reference(onehot, conv.weight, conv.bias, pan, 1)
    assert_close(conv(labels, pan).double(), expected, rtol=1e-5, atol=1e-5)


def test_equals_plain_conv_where_the_window_has_one_id():
    g = _gen(2)
    x = torch.randn(1, 4, 12, 12, generator=g)
    pan = torch.zeros(1, 12, 12, dtype=torch.long)
    pan[:, :, 6:] = 1  # two halves
    pconv = PanopticAwareConv2d(4, 5, 3, padding=1)
    plain = nn.Conv2d(4, 5, 3, padding=1)
    plain.load_state_dict(pconv.state_dict())  # shares the kernel: same keys and shapes
    y, ref = pconv(x, pan), plain(x)
    one_id = torch.zeros(12, 12, dtype=torch.bool)
    one_id[1:-1, 1:4] = True  # windows inside the left half, away from the padding
    one_id[1:-1, 7:11] = True
    assert torch.equal(y[..., one_id], ref[..., one_id])  # bit for bit: it is the plain conv
    assert not torch.allclose(y[..., 5], ref[..., 5])  # windows straddling the cut differ
    # one segment everywhere: the plain conv in the interior
    y1 = pconv(x, torch.full((1, 12, 12), 42))
    assert torch.equal(y1[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
    # and with no padding at all, everywhere
    conv0 = PanopticAwareConv2d(4, 5, 3)
    assert torch.equal(conv0(x, torch.full((1, 12, 12), 3)), F.conv2d(x, conv0.weight, conv0.bias))


def test_zero_output_where_the_mask_is_empty():
    # padding wider than the half window: windows centred in the padding have sum(M) = 0
    conv = PanopticAwareConv2d(2, 3, 3, padding=2)
    with torch.no_grad():
        conv.bias.fill_(5.0)
    x = torch.randn(1, 2, 5, 5, generator=_gen())
    y = conv(x, torch.zeros(1, 5, 5, dtype=torch.long))
    win = conv.windows(torch.zeros(1, 5, 5, dtype=torch.long))
    empty = win.count[:, 0] == 0
    assert empty[0, 0].all() and empty[0, :, 0].all() and not empty[0, 1:-1, 1:-1].any()
    assert (y.permute(0, 2, 3, 1)[empty] == 0).all()  # exactly 0, bias included
    assert (y[0, :, 1:-1, 1:-1] != 0).all()


def test_state_dict_is_a_conv2d_state_dict():
    pconv = PanopticAwareConv2d(3, 4, 3, padding=1)
    assert set(pconv.state_dict()) == {"weight", "bias"}
    plain = nn.Conv2d(3, 4, 3, padding=1)
    pconv.load_state_dict(plain.state_dict(), strict=True)
    assert set(PanopticAwareConv2d(3, 4, 3, bias=False).state_dict()) == {"weight"}


def test_gradients_to_weight_bias_and_input():
    g = _gen(3)
    conv = PanopticAwareConv2d(2, 3, 3, padding=1).double()
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    pan = torch.tensor([[0, 0, 1, 1, 1, 2]] * 5).unsqueeze(0)
    win = conv.windows(pan)
    assert torch.autograd.gradcheck(lambda xx, w, b: panoptic_conv2d(xx, w, b, win), (x, conv.weight, conv.bias))
    labels = torch.randint(0, 2, (1, 5, 6), generator=g)
    assert torch.autograd.gradcheck(lambda w, b: panoptic_conv2d(labels, w, b, win), (conv.weight, conv.bias))
    # the gradient to the input is the literal definition's
    y = conv(x, pan)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (gx,) = torch.autograd.grad((y * gy).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (gx2,) = torch.autograd.grad((literal_conv(x2, conv.weight, conv.bias, pan, padding=1) * gy).sum(), x2)
    assert_close(gx, gx2)
    # an input pixel reaches no window centred on another segment
    conv0 = PanopticAwareConv2d(1, 1, 3, padding=1)
    x3 = torch.randn(1, 1, 5, 6, generator=g, requires_grad=True)
    conv0(x3, pan)[0, 0, 2, 1].backward()
    assert x3.grad[0, 0, :, 2:].abs().sum() == 0 and x3.grad[0, 0, :, :2].abs().sum() > 0


def test_precomputed_windows_dtypes_and_errors():
    g = _gen(4)
    conv = PanopticAwareConv2d(3, 2, 3, padding=1)
    x = torch.randn(2, 3, 6, 7, generator=g)
    pan = torch.randint(0, 4, (2, 6, 7), generator=g)
    win = conv.windows(pan)
    assert torch.equal(conv(x, win), conv(x, pan))
    assert torch.equal(conv(x, pan.unsqueeze(1).int()), conv(x, pan))  # (N, 1, H, W), any int dtype
    # channels-last and bf16 give the same numbers (bf16 within its precision)
    assert_close(conv(x.contiguous(memory_format=torch.channels_last), win), conv(x, win))
    y16 = conv.to(torch.bfloat16)(x.bfloat16(), win)
    assert y16.dtype == torch.bfloat16
    assert_close(y16.float(), conv.float()(x, win), rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="integer"):
        conv(x, pan.float())
    with pytest.raises(ValueError, match="odd"):
        PanopticAwareConv2d(3, 2, 2)
    with pytest.raises(ValueError, match="geometry"):
        conv(x, panoptic_windows(pan, 3, padding=0))
    with pytest.raises(ValueError, match="do not match"):
        conv(x[..., :5], win)


def test_resize_ids_is_legacy_nearest():
    g = _gen(5)
    ids = torch.randint(0, 10_000_000, (2, 13, 17), generator=g)  # beyond float32's exact range
    for size in [(6, 8), (26, 34), (13, 17), (5, 40), (1, 1)]:
        ref = F.interpolate(ids.double().unsqueeze(1), size=size, mode="nearest")[:, 0].long()
        assert torch.equal(resize_ids(ids, size), ref)
    assert resize_ids(ids.unsqueeze(1), (6, 8)).shape == (2, 1, 6, 8)


# ------------------------------------------------------------------ panoptic-aware upsampling


def test_four_pass_priority_on_a_hand_made_map():
    # low grid 2x2 with four ids; every high pixel chooses a source by the pass order
    low = torch.tensor([[[1, 2],
                         [3, 4]]])
    high = torch.tensor([[[1, 2, 2, 9],
                          [3, 4, 4, 9],
                          [3, 4, 4, 9],
                          [9, 9, 9, 9]]])
    index, filled = upsample_sources(low, high)
    # (0,1): id 2; pass 1 source (0,0) = 1 no; pass 2 (1,0) = 3 no; pass 3 (0,1) = 2 yes
    # (1,0): id 3; pass 1 (0,0) no; pass 2 (1,0) = 3 yes
    # (1,1): id 4; passes 1-3 try (0,0), (1,0), (0,1): no; pass 4 (1,1) = 4 yes
    # (0,2): id 2; pass 1 (0,1) = 2 yes
    expected = torch.tensor([[[0, 1, 1, -1],
                              [2, 3, 3, -1],
                              [2, 3, 3, -1],
                              [-1, -1, -1, -1]]])
    assert torch.equal(filled, expected >= 0)
    assert torch.equal(torch.where(filled, index, -1), expected)


def test_earlier_pass_wins_when_several_sources_match():
    # pixel (1, 1) has id 5; sources (1,0) [pass 2], (0,1) [pass 3] and (1,1) [pass 4] all are 5
    low = torch.tensor([[[0, 5], [5, 5]]])
    high = torch.tensor([[[0, 0, 5, 5], [0, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]]])
    index, filled = upsample_sources(low, high)
    assert filled.all()
    assert index[0, 1, 1] == 2  # (1, 0): the row below comes before the column to the right
    low2 = torch.tensor([[[0, 5], [6, 5]]])
    high2 = high.clone()
    high2[0, 2:, :2] = 6
    index2, _ = upsample_sources(low2, high2)
    assert index2[0, 1, 1] == 1  # (0, 1) once (1, 0) no longer matches
    assert index2[0, 1, 0] == 0 and index2[0, 0, 1] == 0  # pass 1 wins wherever it matches


def test_sources_past_the_border_never_match_and_clamping_is_identical():
    low = torch.tensor([[[1, 1], [1, 1]]])
    high = torch.tensor([[[1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 2], [2, 2, 2, 2]]])
    index, filled = upsample_sources(low, high)
    assert not filled[0, 3].any() and not filled[0, :, 3].any()  # the new id-2 border is a hole
    assert filled[0, :3, :3].all()
    for seed in range(6):
        lo = torch.randint(0, 3, (2, 3, 4), generator=_gen(seed))
        hi = torch.randint(0, 3, (2, 6, 8), generator=_gen(seed + 100))
        ref_index, ref_filled = literal_sources(lo, hi)
        index, filled = upsample_sources(lo, hi)
        assert torch.equal(filled, ref_filled) and torch.equal(index[filled], ref_index[filled])
        c_index, c_filled = literal_sources(lo, hi, clamp_border=True)
        assert torch.equal(c_filled, ref_filled) and torch.equal(c_index[c_filled], ref_index[ref_filled])


def test_upsampling_copies_sources_and_fills_holes():
    g = _gen(6)
    low = torch.tensor([[[1, 1, 2], [1, 3, 2]]])
    high = torch.tensor([[[1, 1, 1, 1, 2, 2],
                          [1, 7, 1, 1, 2, 2],
                          [1, 1, 3, 3, 2, 2],
                          [1, 1, 3, 3, 2, 8]]])  # 7 and 8 are new segments: holes
    up = PanopticAwareUpsample(semantic_nc=4, channels=3)
    x = torch.randn(1, 3, 2, 3, generator=g)
    sem = torch.randint(0, 4, (1, 4, 6), generator=g)
    sem_onehot = F.one_hot(sem, 4).permute(0, 3, 1, 2).float()
    y, corr = up(x, low, high, sem_onehot, return_correction=True)
    index, filled = upsample_sources(low, high)
    assert torch.equal(corr[:, 0].bool(), filled)
    assert (~filled).sum() == 2 and not filled[0, 1, 1] and not filled[0, 3, 5]
    src = x.flatten(2)[0][:, index[0]]  # (C, 4, 6)
    assert torch.equal(y[0][:, filled[0]], src[:, filled[0]])
    hole = up.hole_filling(sem_onehot, high)
    assert torch.equal(y[0][:, ~filled[0]], hole[0][:, ~filled[0]])
    # the paper's formula F^u * M + (1 - M) * f(S^u) gives the same numbers
    nearest_filled = torch.where(corr.bool(), y, torch.zeros_like(y))
    assert_close(y, nearest_filled + (1 - corr) * hole, rtol=0, atol=0)
    # labels instead of the one-hot map: same result
    assert_close(up(x, low, high, sem), y)
    # the hole filling is a panoptic-aware conv on P^u: pixel (1, 1) is alone in its segment,
    # so only its own semantic vector counts, scaled by 9/1
    w = up.hole_filling.weight
    expected = w[:, :, 1, 1] @ sem_onehot[0, :, 1, 1] * 9 + up.hole_filling.bias
    assert_close(y[0, :, 1, 1], expected)


def test_consistent_maps_give_nearest_upsampling():
    g = _gen(7)
    low = blocky_ids(2, 5, 7, 2, 4, seed=8)
    high = low.repeat_interleave(2, 1).repeat_interleave(2, 2)
    up = PanopticAwareUpsample(3, 4)
    x = torch.randn(2, 4, 5, 7, generator=g)
    y, corr = up(x, low, high, torch.zeros(2, 3, 10, 14), return_correction=True)
    assert corr.all()
    assert torch.equal(y, F.interpolate(x, scale_factor=2.0, mode="nearest"))
    # a map resized from a full-resolution one with the legacy rule has P^d(i, j) = P^u(2i, 2j)
    full = blocky_ids(2, 40, 56, 3, 5, seed=9)
    lo, hi = resize_ids(full, (10, 14)), resize_ids(full, (20, 28))
    index, filled = upsample_sources(lo, hi)
    assert filled[:, ::2, ::2].all()


def test_upsampling_gradients():
    g = _gen(10)
    low = torch.tensor([[[1, 2], [1, 2]]])
    high = torch.tensor([[[1, 1, 2, 2], [1, 5, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2]]])
    up = PanopticAwareUpsample(2, 2).double()
    x = torch.randn(1, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    sem = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: up(a, low, high, s), (x, sem))
    y = up(x, low, high, sem)
    y[0, :, 1, 1].sum().backward()  # the hole: only the hole-filling conv gets a gradient
    assert x.grad.abs().sum() == 0 and up.hole_filling.weight.grad.abs().sum() > 0
    up.zero_grad()
    x.grad = None
    up(x, low, high, sem)[0, :, 0, 0].sum().backward()  # a copied pixel: only its source
    assert up.hole_filling.weight.grad.abs().sum() == 0
    assert x.grad[0, :, 0, 0].abs().sum() > 0 and x.grad[0, :, 1:, :].abs().sum() == 0


def test_upsampling_rejects_mismatched_grids():
    up = PanopticAwareUpsample(2, 3)
    low = torch.zeros(1, 2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="panoptic_high"):
        up(torch.zeros(1, 3, 2, 3), low, torch.zeros(1, 4, 5, dtype=torch.long), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="like panoptic_low"):
        up(torch.zeros(1, 3, 3, 3), low, torch.zeros(1, 4, 6, dtype=torch.long), torch.zeros(1, 2, 4, 6))
    with pytest.raises(ValueError, match="integer"):
        upsample_sources(low.float(), torch.zeros(1, 4, 6))
