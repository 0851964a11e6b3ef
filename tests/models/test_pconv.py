"""PConv U-Net at tiny configs: shapes, mask handling, both renormalisations, BN freezing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imgsynth.errors import ConfigError, InputError
from imgsynth.models.pconv import PConvUNet
from imgsynth.models.registry import build_model

from tolerance import assert_close

TINY = {"layer_size": 4, "widths": [4, 6, 8, 8]}


def _model(seed: int = 0, **config) -> PConvUNet:
    torch.manual_seed(seed)
    model = build_model("pconv_unet", {**TINY, **config})
    with torch.no_grad():  # non-trivial BN statistics and biases
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.normal_(1, 0.1)
                mod.bias.normal_(0, 0.1)
            elif isinstance(mod, torch.nn.Conv2d) and mod.bias is not None:
                mod.bias.normal_(0, 0.1)
    return model.eval()


def _inputs(n: int, h: int, w: int, seed: int = 0, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.randn(n, 3, h, w, generator=g)
    mask = torch.ones(n, 1, h, w)
    mask[..., h // 4 : h // 2, w // 3 : w // 2 + 3] = 0  # a block hole
    mask = mask * (torch.rand(n, 1, h, w, generator=g) > 0.2).float()  # plus scattered holes
    mask = mask.expand(-1, channels, -1, -1).contiguous()
    return gt * mask, mask


def _reference(model: PConvUNet, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official computation: per-channel masks, Cout x Cin all-ones mask convolutions."""
    def pconv(block, h, m):
        conv = block.conv
        ones = torch.ones_like(conv.weight)
        s = F.conv2d(m, ones, None, conv.stride, conv.padding)
        raw = F.conv2d(h * m, conv.weight, conv.bias, conv.stride, conv.padding)
        b = conv.bias.view(1, -1, 1, 1) if conv.bias is not None else torch.zeros_like(raw)
        if model.renorm == "naoto":
            holes = s == 0
            out = ((raw - b) / s.masked_fill(holes, 1.0) + b).masked_fill(holes, 0.0)
            new = (~holes).float()
        else:
            upd = s.clamp(0, 1)
            ratio = conv.weight[0].numel() / (s + 1e-8) * upd  # sum(1) = Cin*k*k
            out = ((raw - b) * ratio + b) * upd
            new = upd
        if block.bn is not None:
            out = block.bn(out)
        if block.activation == "relu":
            out = F.relu(out)
        elif block.activation == "leaky":
            out = F.leaky_relu(out, 0.2)
        return out, new

    feats, masks = [x], [mask]
    for i in range(1, model.layer_size + 1):
        h, m = pconv(getattr(model, f"enc_{i}"), feats[-1], masks[-1])
        feats.append(h)
        masks.append(m)
    h, m = feats[-1], masks[-1]
    for i in range(model.layer_size, 0, -1):
        h = torch.cat([F.interpolate(h, scale_factor=2.0), feats[i - 1]], 1)
        m = torch.cat([F.interpolate(m, scale_factor=2.0), masks[i - 1]], 1)
        h, m = pconv(getattr(model, f"dec_{i}"), h, m)
    return h, m


@pytest.mark.parametrize("renorm", ["naoto", "nvidia"])
def test_matches_the_official_all_ones_mask_convolutions(renorm: str) -> None:
    model = _model(renorm=renorm, enc1_bias=renorm == "nvidia")
    x, mask = _inputs(2, 32, 48)
    mask[:, 1, :4, :] = 0  # input channels need not share the mask
    with torch.no_grad():
        out, out_mask = model(x, mask)
        ref, ref_mask = _reference(model, x, mask)
    assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out_mask, ref_mask)


@pytest.mark.parametrize("packed", [True, False])
def test_cpu_runs_channels_last_with_cached_weights_and_matches_the_reference(packed: bool, conv_paths) -> None:
    conv_paths(packed)
    model = _model(renorm="naoto", layer_size=5)
    x, mask = _inputs(1, 64, 96)
    with torch.inference_mode():
        out, out_mask = model(x, mask)
        ref, ref_mask = _reference(model, x, mask)
    assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out_mask, ref_mask) and out.is_contiguous()
    if packed:  # oneDNN's packed weights on every grid
        assert all("_weight_cache_onednn" in m.conv.__dict__ for m in (model.enc_1, model.dec_1, model.enc_5))
        return
    # grids above 8x8 pixels: oneDNN channels-last with a cached weight; at or below: GEMM
    assert "_weight_cache_cl" in model.enc_1.conv.__dict__ and "_weight_cache_cl" in model.dec_1.conv.__dict__
    assert "_weight_cache_cl" not in model.enc_5.conv.__dict__  # input 4x6


def test_variants_differ() -> None:
    x, mask = _inputs(1, 32, 32)
    a = _model(renorm="naoto")
    b = _model(renorm="nvidia")
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert not torch.allclose(a(x, mask)[0], b(x, mask)[0])


@pytest.mark.parametrize(("h", "w"), [(16, 64), (48, 32)])
def test_output_shapes_at_non_square_sizes(h: int, w: int) -> None:
    x, mask = _inputs(2, h, w)
    with torch.no_grad():
        out, out_mask = _model()(x, mask)
    assert out.shape == (2, 3, h, w) and out_mask.shape == (2, 3, h, w)
    assert bool(torch.isfinite(out).all())


def test_size_not_a_multiple_of_two_to_the_layer_size_is_an_input_error() -> None:
    x, mask = _inputs(1, 24, 32)
    with pytest.raises(InputError, match="multiple of 16"):
        _model()(x, mask)
    with pytest.raises(InputError, match="mask"):
        _model()(x[..., :16, :], mask[:, :2, :16, :])


def test_hole_values_are_ignored_and_known_pixels_decide_the_output() -> None:
    model = _model()
    x, mask = _inputs(1, 32, 32)
    noisy = x + (1 - mask) * 100.0 * torch.randn_like(x)
    with torch.no_grad():
        a, a_mask = model(x, mask)
        b, _ = model(noisy, mask)
        c, _ = model(x + mask * torch.randn_like(x), mask)
    assert_close(a, b)
    assert not torch.allclose(a, c)
    assert bool((a_mask == 1).all())  # small holes get filled


def test_all_hole_input_gives_zero_output_and_mask() -> None:
    x = torch.zeros(1, 3, 16, 16)
    with torch.no_grad():
        out, out_mask = _model()(x, torch.zeros(1, 3, 16, 16))
    assert torch.equal(out, torch.zeros_like(out)) and torch.equal(out_mask, torch.zeros_like(out_mask))


def test_one_channel_mask_equals_the_repeated_mask() -> None:
    model = _model(renorm="nvidia")
    x, mask = _inputs(2, 32, 16)
    with torch.no_grad():
        a, am = model(x, mask[:, :1])
        b, bm = model(x, mask)
    assert_close(a, b)
    assert torch.equal(am, bm)


def test_state_dict_has_no_mask_kernels() -> None:
    keys = list(_model(layer_size=5).state_dict())
    assert not any("mask" in k for k in keys)
    assert "dec_1.conv.bias" in keys and "enc_1.conv.bias" not in keys and "enc_1.bn.weight" not in keys
    layers = {f"enc_{i}" for i in range(1, 6)} | {f"dec_{i}" for i in range(1, 6)}
    assert {k.split(".")[0] for k in keys} == layers
    assert "enc_1.conv.bias" in _model(enc1_bias=True).state_dict()


def test_freeze_encoder_bn_keeps_encoder_statistics() -> None:
    model = _model().train()
    model.freeze_encoder_bn()
    model.train()
    assert not model.enc_2.bn.training and model.dec_2.bn.training and model.training
    enc_before = model.enc_2.bn.running_mean.clone()
    dec_before = model.dec_2.bn.running_mean.clone()
    x, mask = _inputs(2, 16, 16)
    out, _ = model(x, mask)
    out.mean().backward()
    assert torch.equal(model.enc_2.bn.running_mean, enc_before)
    assert not torch.equal(model.dec_2.bn.running_mean, dec_before)
    assert model.enc_1.conv.weight.grad is not None and bool(model.enc_1.conv.weight.grad.abs().sum() > 0)
    model.freeze_encoder_bn(False)
    assert model.enc_2.bn.training


def test_freeze_all_bn_trains_the_inference_function() -> None:
    model = _model().train()
    model.freeze_bn(encoder=True, decoder=True)
    assert model.training and not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x, mask = _inputs(2, 16, 16)
    out, _ = model(x, mask)
    out.mean().backward()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert model.dec_2.bn.weight.grad is not None  # affine parameters still learn
    with torch.no_grad():
        assert_close(model.eval()(x, mask)[0], out)
    model.freeze_encoder_bn(False)  # the decoder stays frozen
    model.train()
    assert model.enc_2.bn.training and not model.dec_2.bn.training


def test_gradients_are_finite_through_holes() -> None:
    model = _model().train()
    x, mask = _inputs(2, 32, 32)
    out, _ = model(x, mask)
    F.l1_loss(out, torch.zeros_like(out)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


def test_bfloat16() -> None:
    model = _model()
    x, mask = _inputs(1, 16, 32)
    with torch.no_grad():
        ref, _ = model(x, mask)
        out, out_mask = model.to(torch.bfloat16)(x.bfloat16(), mask.bfloat16())
    assert out.dtype == torch.bfloat16 and out_mask.dtype == torch.bfloat16
    assert bool(torch.isfinite(out.float()).all())
    assert (out.float() - ref).abs().mean() < 0.1 * ref.abs().mean()


def test_dummy_inputs_run() -> None:
    model = _model()
    x, mask = model.dummy_inputs(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, _ = model(x, mask)
    assert out.shape == x.shape


@pytest.mark.parametrize(
    "config", [{"layer_size": 3}, {"widths": [4, 8]}, {"renorm": "partial"}]
)
def test_bad_config_is_a_config_error(config: dict) -> None:
    with pytest.raises(ConfigError):
        build_model("pconv_unet", {**TINY, **config})


def test_upsample_cat_is_nearest_upsampling_then_concatenation() -> None:
    from imgsynth.models.pconv import _upsample_cat

    g = torch.Generator().manual_seed(0)
    low = torch.randn(2, 5, 3, 4, generator=g).contiguous(memory_format=torch.channels_last)
    skip = torch.randn(2, 3, 6, 8, generator=g)
    got = _upsample_cat(low, skip)
    want = torch.cat([F.interpolate(low, scale_factor=2.0, mode="nearest"), skip], 1)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)
