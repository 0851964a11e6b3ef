"""CycleGAN ResNet generator: structure, options, CPU transposed-conv path, dtypes (tiny configs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.models import build_model, get_model
from imgsynth.models.cyclegan import (
    ResnetBlock,
    ResnetGenerator,
    apply_norm,
    conv2d_gemm,
    conv_transpose2d_gemm,
    fast_conv2d,
    fast_conv_transpose2d,
    make_norm,
)

from tolerance import assert_close

TINY = get_model("cyclegan_resnet").tiny


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_translate_model() -> None:
    spec = get_model("cyclegan_resnet")
    assert spec.task == "translate" and spec.cls is ResnetGenerator


def test_forward_shape_and_range() -> None:
    torch.manual_seed(0)
    m = build_model("cyclegan_resnet", TINY).eval()
    (x,) = m.dummy_inputs(2, _gen())
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 3, *x.shape[-2:])
    assert y.abs().max() <= 1.0 and y.std() > 0.01


@pytest.mark.parametrize("n_blocks", [6, 9])
def test_released_layouts_have_official_widths(n_blocks: int) -> None:
    with torch.device("meta"):
        m = build_model("cyclegan_resnet", {"ngf": 64, "n_blocks": n_blocks})
    assert len(m.blocks) == n_blocks
    assert m.blocks[0].conv1.weight.shape == (256, 256, 3, 3)
    assert m.up[1].conv.weight.shape == (128, 64, 3, 3)  # ConvTranspose2d: (in, out, k, k)
    # 11,378,179 parameters for resnet_9blocks ngf 64 (official manifest)
    if n_blocks == 9:
        assert sum(p.numel() for p in m.parameters()) == 11_378_179


def test_batch_norm_drops_conv_biases_instance_norm_keeps_them() -> None:
    inst = build_model("cyclegan_resnet", {**TINY, "norm": "instance"})
    batch = build_model("cyclegan_resnet", {**TINY, "norm": "batch"})
    assert inst.stem.conv.bias is not None and not any("running_mean" in k for k in inst.state_dict())
    assert batch.stem.conv.bias is None and "stem.norm.running_mean" in batch.state_dict()
    assert batch.head.bias is not None  # the output conv always has one


def test_dropout_option_adds_dropout_to_every_block() -> None:
    m = build_model("cyclegan_resnet", {**TINY, "use_dropout": True})
    assert sum(isinstance(x, nn.Dropout) for x in m.modules()) == TINY["n_blocks"]
    assert sum(isinstance(x, nn.Dropout) for x in build_model("cyclegan_resnet", TINY).modules()) == 0


@pytest.mark.parametrize("padding_type,mode", [("reflect", "reflect"), ("replicate", "replicate"), ("zero", "zeros")])
def test_padding_types(padding_type: str, mode: str) -> None:
    block = ResnetBlock(4, padding_type=padding_type)
    assert block.conv1.padding_mode == mode
    x = torch.randn(1, 4, 6, 6)
    assert block(x).shape == x.shape


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="norm"):
        build_model("cyclegan_resnet", {**TINY, "norm": "group"})
    with pytest.raises(ConfigError, match="padding_type"):
        build_model("cyclegan_resnet", {**TINY, "padding_type": "circular"})


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "cin,cout,k,s,p,op,size",
    [(8, 4, 3, 2, 1, 1, 5), (6, 3, 4, 2, 1, 0, 4), (3, 5, 3, 1, 1, 0, 7), (4, 2, 7, 1, 3, 0, 9)],
)
def test_gemm_convolutions_match_torch(bias: bool, cin: int, cout: int, k: int, s: int, p: int, op: int, size: int) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(cin, cout, k, s, p, bias=bias)
    convt = nn.ConvTranspose2d(cin, cout, k, s, p, output_padding=op, bias=bias)
    x = torch.randn(2, cin, size, size + 1)
    assert_close(conv2d_gemm(x, conv), conv(x), atol=1e-5, rtol=1e-5)
    assert_close(conv_transpose2d_gemm(x, convt), convt(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "conv,size",
    [
        (nn.Conv2d(32, 16, 3, 2, 1), 8),  # small grid: GEMM
        (nn.Conv2d(36, 16, 7, padding=3, padding_mode="reflect"), 20),  # odd width: channels-last
        (nn.Conv2d(16, 3, 7, padding=3, padding_mode="reflect"), 20),  # RGB head: channels-last
        (nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect"), 20),  # plain
        (nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1), 8),  # small grid: GEMM
        (nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), 20),  # channels-last
    ],
)
def test_fast_dispatch_matches_module_and_returns_contiguous(conv: nn.Module, size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, size, size)
    fast = fast_conv_transpose2d if isinstance(conv, nn.ConvTranspose2d) else fast_conv2d
    with torch.no_grad():
        y = fast(x, conv)
        assert_close(y, conv(x), atol=1e-5, rtol=1e-5)
    assert y.is_contiguous()
    x.requires_grad_(True)
    fast(x, conv).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    m = build_model("cyclegan_resnet", TINY)
    (x,) = m.dummy_inputs(1, _gen())
    m(x).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_bfloat16_forward() -> None:
    m = build_model("cyclegan_resnet", TINY).to(torch.bfloat16)
    (x,) = m.dummy_inputs(1, _gen())
    assert x.dtype == torch.bfloat16
    y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_apply_norm_is_the_instance_norm_as_group_norm() -> None:
    x = torch.randn(2, 8, 12, 10) * 3 + 1
    for norm in (make_norm("instance", 8), make_norm("instance_tracked", 8).eval(), make_norm("batch", 8).eval()):
        assert_close(apply_norm(norm, x), norm(x), atol=1e-5, rtol=1e-5)
    # the group-norm path is taken (the module is not called) for the untracked instance norm
    calls = []
    norm = make_norm("instance", 8)
    norm.register_forward_hook(lambda *a: calls.append(1))
    apply_norm(norm, x)
    assert not calls
    apply_norm(norm, x.contiguous(memory_format=torch.channels_last))  # channels-last: the module
    assert calls
