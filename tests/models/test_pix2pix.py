"""pix2pix U-Net: structure, skip/dropout layout, test-time modes, CPU matmul paths (tiny configs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.models import build_model, get_model
from imgsynth.models.pix2pix import UnetGenerator

from tolerance import assert_close

TINY = get_model("pix2pix_unet").tiny


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(**kw) -> UnetGenerator:
    torch.manual_seed(0)
    return build_model("pix2pix_unet", {**TINY, **kw})


def test_registered_translate_model() -> None:
    spec = get_model("pix2pix_unet")
    assert spec.task == "translate" and spec.cls is UnetGenerator


def test_forward_shape_and_range() -> None:
    m = _model().eval()
    (x,) = m.dummy_inputs(2, _gen())
    assert x.shape == (2, 3, 32, 32)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0 and y.std() > 0.01


def test_unet256_widths_and_parameter_count() -> None:
    with torch.device("meta"):
        m = build_model("pix2pix_unet", {"num_downs": 8, "ngf": 64})
    assert [s.conv.out_channels for s in m.down] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [s.conv.in_channels for s in m.up] == [128, 256, 512, 1024, 1024, 1024, 1024, 512]
    assert m.down[0].norm is None and m.down[-1].norm is None and m.up[0].norm is None
    assert m.up[0].conv.bias is not None and m.up[1].conv.bias is None
    # 54,413,955 parameters for unet_256 ngf 64 (official manifest)
    assert sum(p.numel() for p in m.parameters()) == 54_413_955


@pytest.mark.parametrize("num_downs,expected", [(5, []), (7, [4, 5]), (8, [4, 5, 6])])
def test_dropout_in_the_stages_next_to_the_bottleneck(num_downs: int, expected: list[int]) -> None:
    with torch.device("meta"):
        m = build_model("pix2pix_unet", {"num_downs": num_downs, "ngf": 2})
        off = build_model("pix2pix_unet", {"num_downs": num_downs, "ngf": 2, "use_dropout": False})
    assert [j for j, s in enumerate(m.up) if isinstance(s.dropout, nn.Dropout)] == expected
    assert not any(isinstance(x, nn.Dropout) for x in off.modules())


def test_eval_mode_is_deterministic_train_mode_is_seeded() -> None:
    m = _model(num_downs=6)  # one dropout stage
    (x,) = m.dummy_inputs(1, _gen())
    with torch.no_grad():
        m.eval()
        a, b = m(x), m(x)
        assert_close(a, b, rtol=0, atol=0)
        m.train()
        torch.manual_seed(7)
        c = m(x)
        torch.manual_seed(7)
        d = m(x)
        torch.manual_seed(8)
        e = m(x)
    assert_close(c, d, rtol=0, atol=0)
    assert (c - e).abs().max() > 1e-4  # different dropout masks
    assert (a - c).abs().max() > 1e-4  # batch statistics + dropout differ from eval


def test_train_mode_uses_batch_statistics() -> None:
    m = _model(use_dropout=False)
    (x,) = m.dummy_inputs(2, _gen())
    before = m.down[1].norm.running_mean.clone()
    with torch.no_grad():
        m.train()(x)
    assert not torch.equal(before, m.down[1].norm.running_mean)


def test_skip_connections_carry_encoder_features() -> None:
    m = _model(use_dropout=False).train()  # batch statistics: the bottleneck matters
    (x,) = m.dummy_inputs(2, _gen())
    with torch.no_grad():
        ref = m(x)
        m.down[-1].conv.weight.zero_()  # bottleneck silenced: the skips still carry the image
        y = m(x)
    assert (y - ref).abs().max() > 1e-3
    assert y.std() > 0.01


def test_instance_norm_variant_has_biases_and_no_running_stats() -> None:
    m = _model(norm="instance")
    assert m.down[0].conv.bias is not None
    assert not any("running" in k for k in m.state_dict())
    (x,) = m.dummy_inputs(1, _gen())
    assert m.eval()(x).shape == x.shape


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="num_downs"):
        build_model("pix2pix_unet", {"num_downs": 4})
    with pytest.raises(ConfigError, match="norm"):
        build_model("pix2pix_unet", {**TINY, "norm": "layer"})


def _plain_forward(m: UnetGenerator, x: torch.Tensor) -> torch.Tensor:
    """The U-Net through its modules as they are (no CPU fast paths, NCHW throughout)."""
    h, skips = x, []
    for stage in m.down:
        h = nn.functional.leaky_relu(h, 0.2) if stage.activation else h
        h = stage.conv(h)
        h = stage.norm(h) if stage.norm is not None else h
        skips.append(h)
    h = skips.pop()
    for j in range(m.num_downs - 1, -1, -1):
        stage = m.up[j]
        h = stage.conv(nn.functional.relu(h))
        h = stage.norm(h) if stage.norm is not None else torch.tanh(h)
        h = stage.dropout(h) if stage.dropout is not None else h
        h = torch.cat([skips[j - 1], h], 1) if j else h
    return h


@pytest.mark.parametrize("train", [False, True])
def test_cpu_fast_paths_match_plain_modules(train: bool) -> None:
    # unet_256 widths at a reduced ngf: small inner grids (GEMM paths), larger outer ones
    # (channels-last); train mode: batch statistics and the same dropout masks for the same seed
    m = _model(num_downs=8, ngf=8).train(train)
    x = torch.rand(1, 3, 256, 256, generator=_gen()) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(3)
        fast = m(x)
        torch.manual_seed(3)
        plain = _plain_forward(m, x)
    assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    assert fast.is_contiguous()


@pytest.mark.parametrize("packed", [True, False])
def test_cpu_forward_runs_channels_last_with_folded_batch_norm_and_cached_weights(packed: bool, conv_paths) -> None:
    # 256 px: eval BatchNorm folded into each conv. With oneDNN's packed weights, every level but
    # the 3-channel head runs on a cached packed weight with the activation fused; without them,
    # the outer levels (> 8x8 inputs) take the channels-last path with a cached channels-last
    # weight and the inner ones the GEMM path
    tag = conv_paths(packed)
    m = _model(num_downs=8, ngf=8).eval()
    with torch.no_grad():  # non-trivial statistics, so that folding them matters
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.normal_(0, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.normal_(1, 0.2)
                bn.bias.normal_(0, 0.2)
    x = torch.rand(1, 3, 256, 256, generator=_gen()) * 2 - 1
    with torch.inference_mode():
        y1 = m(x)
        folded = m.down[1].conv.__dict__["_bn_folded"][1]
        cached = folded.__dict__[tag][1]
        y2 = m(x)
    with torch.no_grad():
        plain = _plain_forward(m, x)
    assert_close(y1, plain, atol=1e-5, rtol=1e-5)
    assert y1.is_contiguous() and torch.equal(y1, y2)
    assert cached.is_mkldnn if packed else cached.is_contiguous(memory_format=torch.channels_last)
    assert m.down[1].conv.__dict__["_bn_folded"][1] is folded and folded.__dict__[tag][1] is cached
    assert tag in m.up[2].conv.__dict__["_bn_folded"][1].__dict__  # 32x32 -> 64x64
    inner = "_weight_cache_onednn" if packed else "_weight_cache_gemm_t"  # 4x4 -> 8x8
    assert inner in m.up[5].conv.__dict__["_bn_folded"][1].__dict__
    assert "_weight_cache_gemm_t" in m.up[0].conv.__dict__  # 3 output channels: GEMM either way
    assert "_bn_folded" not in m.down[0].conv.__dict__ and "_bn_folded" not in m.up[0].conv.__dict__  # no norm
    with torch.no_grad():
        m.down[1].norm.running_var.mul_(2)  # new statistics (version bump): the fold is rebuilt
    with torch.inference_mode():
        y3 = m(x)
    with torch.no_grad():
        assert_close(y3, _plain_forward(m, x), atol=1e-5, rtol=1e-5)
    assert m.down[1].conv.__dict__["_bn_folded"][1] is not folded


def test_gradients_reach_every_parameter() -> None:
    m = _model()
    (x,) = m.dummy_inputs(2, _gen())
    m.train()(x).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_bfloat16_forward() -> None:
    m = _model().to(torch.bfloat16).eval()
    (x,) = m.dummy_inputs(1, _gen())
    y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
