"""CPU float32 convolution dispatch: same numbers as the modules, layouts kept, weights cached."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgsynth.layers.fast_conv import fast_conv2d, fast_conv_transpose2d, fold_batch_norm
from imgsynth.layers.partial_conv import PartialConv2d

from tolerance import assert_close


@pytest.mark.parametrize(
    "conv,size",
    [
        (nn.Conv2d(16, 8, 4, 2, 1), 8),  # small grid: GEMM, then back to channels-last
        (nn.Conv2d(16, 8, 4, 2, 1, bias=False), 12),  # oneDNN channels-last, cached weight
        (nn.Conv2d(16, 8, 3, padding=1, padding_mode="reflect"), 6),  # reflect: never the GEMM
        (nn.ConvTranspose2d(16, 8, 4, 2, 1), 8),  # small grid: GEMM
        (nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False), 12),  # oneDNN channels-last
        (nn.ConvTranspose2d(16, 3, 4, 2, 1), 12),  # few output channels: GEMM
    ],
)
def test_fast_dispatch_keeps_channels_last(conv: nn.Module, size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, size, size)
    fast = fast_conv_transpose2d if isinstance(conv, nn.ConvTranspose2d) else fast_conv2d
    with torch.no_grad():
        want = conv(x)
        y = fast(x.contiguous(memory_format=torch.channels_last), conv, channels_last=True)
        assert_close(y, want, atol=1e-5, rtol=1e-5)
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
        if fast is fast_conv2d:
            return
        # a one-pixel input (the U-Net's bottleneck) is both layouts: the caller says which
        one = torch.randn(1, conv.in_channels, 1, 1)
        y1 = fast(one, conv, channels_last=True)
        assert_close(y1, conv(one), atol=1e-5, rtol=1e-5)
        assert y1.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("packed", [True, False])
def test_channels_last_weight_is_cached_without_grad_only(packed: bool, conv_paths) -> None:
    slot = conv_paths(packed)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(1, 16, 20, 20).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast_conv2d(x, conv, channels_last=True)
        first = conv.__dict__[slot][1]
        fast_conv2d(x, conv, channels_last=True)
        assert conv.__dict__[slot][1] is first
        conv.weight.add_(1.0)  # in-place change: new version, new cache
        assert_close(fast_conv2d(x, conv, channels_last=True), conv(x), atol=1e-5, rtol=1e-5)
        assert conv.__dict__[slot][1] is not first
        if packed:  # another input shape: packed again for it, same numbers
            second = conv.__dict__[slot][1]
            x2 = torch.randn(2, 16, 12, 9).contiguous(memory_format=torch.channels_last)
            assert_close(fast_conv2d(x2, conv, channels_last=True), conv(x2), atol=1e-5, rtol=1e-5)
            assert conv.__dict__[slot][1] is not second
    # with gradients, the weight is converted inside the graph and gradients reach it
    conv.weight.grad = None
    fast_conv2d(x, conv, channels_last=True).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("post", ["relu", "leaky_relu"])
@pytest.mark.parametrize("size", [1, 4, 12])
def test_post_activation_on_every_path(
    packed: bool, transposed: bool, post: str, size: int, conv_paths
) -> None:
    # fused into oneDNN's convolution (packed), or applied after it (GEMM, channels-last, NCHW,
    # autograd): the same numbers as the activation after the module
    conv_paths(packed)
    torch.manual_seed(0)
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(16, 8, 4, 2, 1)
    fast = fast_conv_transpose2d if transposed else fast_conv2d
    x = torch.randn(2, 16, size, size) if transposed or size > 1 else torch.randn(2, 16, 2, 2)
    act = (lambda y: nn.functional.relu(y)) if post == "relu" else (lambda y: nn.functional.leaky_relu(y, 0.2))
    with torch.no_grad():
        want = act(conv(x))
        for cl in (True, False):
            xin = x.contiguous(memory_format=torch.channels_last) if cl else x
            assert_close(fast(xin, conv, cl, post=post, slope=0.2), want, atol=1e-5, rtol=1e-5)
    y = fast(x, conv, post=post, slope=0.2)  # autograd: not in place, gradients flow
    assert_close(y, act(conv(x)), atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert conv.weight.grad is not None
    with pytest.raises(ValueError, match="post"):
        fast(x, conv, post="tanh")


def test_a_module_with_a_packed_weight_copies_and_pickles(conv_paths) -> None:
    # an EMA copy (deepcopy) or a pickled module after an inference call: the opaque oneDNN
    # tensor is left behind and rebuilt on first use
    import copy
    import pickle

    conv_paths(True)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = fast_conv2d(x, conv, channels_last=True)
        assert conv.__dict__["_weight_cache_onednn"][1].is_mkldnn
        for twin in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
            assert twin.__dict__["_weight_cache_onednn"][1] is None
            assert torch.equal(fast_conv2d(x, twin, channels_last=True), want)
            assert twin.__dict__["_weight_cache_onednn"][1].is_mkldnn


def test_flop_counter_counts_the_fused_ops_as_convolutions(conv_paths) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from imgsynth.layers.fast_conv import register_flop_formulas

    conv_paths(True)
    register_flop_formulas()
    register_flop_formulas()  # idempotent
    conv, convt = nn.Conv2d(16, 8, 4, 2, 1), nn.ConvTranspose2d(16, 8, 4, 2, 1)
    x = torch.randn(1, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    counts = []
    for fused in (True, False):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            if fused:
                fast_conv2d(x, conv, channels_last=True, post="relu")
                fast_conv_transpose2d(x, convt, channels_last=True, post="relu")
            else:
                conv(x)
                convt(x)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 2 * (6 * 6 * 8 * 16 * 16 + 12 * 12 * 16 * 8 * 16)


def test_packed_path_needs_zero_padding_and_no_groups(conv_paths) -> None:
    conv_paths(True)
    reflect = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
    x = torch.randn(1, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for conv in (reflect, grouped):
            assert_close(fast_conv2d(x, conv, channels_last=True), conv(x), atol=1e-5, rtol=1e-5)
            assert "_weight_cache_onednn" not in conv.__dict__


@pytest.mark.parametrize("size", [6, 20])  # GEMM and oneDNN channels-last
@pytest.mark.parametrize("channels_last", [False, True])
def test_bias_false_is_the_plain_convolution_even_for_a_subclass(size: int, channels_last: bool) -> None:
    torch.manual_seed(0)
    conv = PartialConv2d(8, 16, 3, padding=1)  # its own forward() takes a mask: never called here
    nn.init.normal_(conv.bias)
    x = torch.randn(2, 8, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = fast_conv2d(x, conv, channels_last, bias=False)
        assert_close(y, nn.functional.conv2d(x, conv.weight, None, padding=1), atol=1e-5, rtol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_fold_batch_norm_is_conv_then_eval_batch_norm(transposed: bool, bias: bool) -> None:
    torch.manual_seed(0)
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(6, 5, 4, 2, 1, bias=bias)
    bn = nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1, 0.3)
        bn.bias.normal_(0, 0.3)
    x = torch.randn(2, 6, 9, 7)
    with torch.inference_mode():
        folded = fold_batch_norm(conv, bn)
        assert_close(folded(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
        assert fold_batch_norm(conv, bn) is folded  # cached
    assert not any(n.startswith("_bn") for n, _ in conv.named_modules()) and "weight" in dict(conv.named_parameters())
    assert set(conv.state_dict()) == ({"weight", "bias"} if bias else {"weight"})
    assert fold_batch_norm(conv, bn) is None  # autograd on: the modules as they are
    with torch.no_grad():
        assert fold_batch_norm(conv, bn.train()) is None  # batch statistics: nothing to fold
        assert fold_batch_norm(conv, nn.InstanceNorm2d(5)) is None


def test_layers_built_under_inference_mode_run_uncached() -> None:
    with torch.inference_mode():
        conv = nn.Conv2d(8, 8, 3, padding=1)
        convt = nn.ConvTranspose2d(8, 8, 4, 2, 1)
        bn = nn.BatchNorm2d(8).eval()
        x = torch.randn(1, 8, 12, 12).contiguous(memory_format=torch.channels_last)
        small = torch.randn(1, 8, 4, 4)
        assert_close(fast_conv2d(x, conv, channels_last=True), conv(x), atol=1e-5, rtol=1e-5)
        assert_close(fast_conv_transpose2d(small, convt), convt(small), atol=1e-5, rtol=1e-5)
        assert fold_batch_norm(conv, bn) is None
    assert not any(k.startswith("_weight_cache") for k in (*conv.__dict__, *convt.__dict__))


def test_without_the_flag_a_channels_last_input_gives_nchw_like_before() -> None:
    # the ResNet generators get channels-last one-hot label maps; their norms want NCHW
    conv = nn.Conv2d(36, 16, 7, padding=3, padding_mode="reflect")
    x = torch.randn(1, 36, 20, 20).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = fast_conv2d(x, conv)
        assert_close(y, conv(x), atol=1e-5, rtol=1e-5)
    assert y.is_contiguous()
