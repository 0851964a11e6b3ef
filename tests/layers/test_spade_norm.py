"""SPADE layer and SPADE residual block against direct computations of the official formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.layers.spade_norm import (
    SPADE,
    SPADEResnetBlock,
    onehot_conv2d,
    onehot_index,
    resize_nearest,
    shared_hidden,
)

from tolerance import assert_close


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
    return module


def _reference_spade(layer: SPADE, x: torch.Tensor, seg: torch.Tensor, training: bool) -> torch.Tensor:
    """Official SPADE.forward written out: separate gamma/beta convs, (1 + gamma)."""
    c = layer.norm_nc
    norm = layer.param_free_norm
    if isinstance(norm, nn.BatchNorm2d):
        normalized = F.batch_norm(x, None if training else norm.running_mean,
                                  None if training else norm.running_var, training=training, eps=1e-5)
    else:
        normalized = F.instance_norm(x, eps=1e-5)
    seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
    shared = layer.mlp_shared[0]
    actv = F.relu(F.conv2d(seg, shared.weight, shared.bias, padding=shared.padding))
    gb = layer.mlp_gamma_beta
    gamma = F.conv2d(actv, gb.weight[:c], gb.bias[:c], padding=gb.padding)
    beta = F.conv2d(actv, gb.weight[c:], gb.bias[c:], padding=gb.padding)
    return normalized * (1 + gamma) + beta


def test_resize_nearest_is_legacy_floor() -> None:
    seg = torch.arange(5.0).view(1, 1, 1, 5)
    out = resize_nearest(seg, (1, 3))
    # legacy 'nearest': src = floor(dst * 5 / 3) -> 0, 1, 3 ('nearest-exact' would give 0, 2, 4)
    assert out.flatten().tolist() == [0.0, 1.0, 3.0]
    assert resize_nearest(seg, (1, 5)) is seg
    big = torch.rand(2, 3, 12, 20)
    for size in [(4, 5), (3, 10), (5, 7), (24, 40)]:  # integer factors are strided views
        assert torch.equal(resize_nearest(big, size), F.interpolate(big, size=size, mode="nearest"))


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("training", [False, True])
def test_spade_layer_matches_formula(norm: str, training: bool) -> None:
    layer = _randomize(SPADE(6, 4, nhidden=8, norm=norm)).train(training)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 8, 12, generator=g) * 2 + 1
    seg = torch.rand(2, 4, 5, 7, generator=g)
    want = _reference_spade(layer, x, seg, training)
    got = layer(x, seg)
    assert got.shape == x.shape
    assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_spade_state_dict_layout() -> None:
    keys = set(SPADE(6, 4, nhidden=8).state_dict())
    assert keys == {
        "param_free_norm.running_mean", "param_free_norm.running_var", "param_free_norm.num_batches_tracked",
        "mlp_shared.0.weight", "mlp_shared.0.bias", "mlp_gamma_beta.weight", "mlp_gamma_beta.bias",
    }
    assert SPADE(6, 4, nhidden=8, kernel_size=5).mlp_gamma_beta.weight.shape == (12, 8, 5, 5)
    with pytest.raises(ValueError, match="norm must be one of"):
        SPADE(6, 4, norm="group")


def _reference_block(block: SPADEResnetBlock, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Official SPADEResnetBlock.forward with each SPADE layer run on its own."""
    def conv(m: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, m.weight, m.bias, padding=m.padding)

    x_s = conv(block.conv_s, _reference_spade(block.norm_s, x, seg, False)) if block.learned_shortcut else x
    dx = conv(block.conv_0, F.leaky_relu(_reference_spade(block.norm_0, x, seg, False), 0.2))
    dx = conv(block.conv_1, F.leaky_relu(_reference_spade(block.norm_1, dx, seg, False), 0.2))
    return x_s + dx


@pytest.mark.parametrize("fin,fout", [(8, 4), (6, 6), (4, 8)])
def test_resblock_matches_unfused_reference(fin: int, fout: int) -> None:
    block = _randomize(SPADEResnetBlock(fin, fout, 3, nhidden=8)).eval()
    g = torch.Generator().manual_seed(2)
    x, seg = torch.randn(2, fin, 6, 10, generator=g), torch.rand(2, 3, 12, 20, generator=g)
    with torch.no_grad():
        got = block(x, seg)
        want = _reference_block(block, x, seg)
    assert got.shape == (2, fout, 6, 10)  # no resampling inside the block
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert block.learned_shortcut == (fin != fout)
    assert hasattr(block, "conv_s") == (fin != fout)
    if fin != fout:
        assert block.conv_s.bias is None and block.conv_s.kernel_size == (1, 1)
        assert block.conv_0.out_channels == min(fin, fout)


class _TaggedConv(nn.Conv2d):
    """A stand-in for a panoptic-aware conv: a Conv2d subclass, so not fused."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return super().forward(x)


def test_conv_factory_is_used_and_disables_fusion() -> None:
    seen = []

    def factory(cin: int, cout: int, k: int) -> nn.Module:
        seen.append((cin, cout, k))
        return _TaggedConv(cin, cout, k, padding=k // 2)

    block = SPADEResnetBlock(6, 4, 3, nhidden=8, conv_factory=factory)
    assert (3, 8, 3) in seen and (8, 12, 3) in seen and (8, 8, 3) in seen
    plain = SPADEResnetBlock(6, 4, 3, nhidden=8)
    plain.load_state_dict(_randomize(block).state_dict())
    block.eval(), plain.eval()
    x, seg = torch.randn(1, 6, 5, 5), torch.rand(1, 3, 5, 5)
    _TaggedConv.calls = 0
    with torch.no_grad():
        got = block(x, seg)
    assert _TaggedConv.calls == 6  # 3 shared + 3 gamma/beta convs, each called separately
    assert_close(got, plain(x, seg), rtol=1e-5, atol=1e-5)


def test_shared_hidden_fuses_to_identical_features() -> None:
    norms = [_randomize(SPADE(c, 3, nhidden=5), seed=c) for c in (4, 6, 2)]
    seg = torch.rand(2, 3, 7, 7)
    fused = shared_hidden(norms, seg)
    for n, h in zip(norms, fused):
        assert_close(h, n.hidden(seg), rtol=1e-6, atol=1e-6)


def test_spectral_norm_flag_uses_stored_u_v_in_eval() -> None:
    block = SPADEResnetBlock(6, 4, 3, nhidden=8, spectral_norm=True)
    keys = set(block.state_dict())
    assert "conv_0.parametrizations.weight.original" in keys and "conv_s.parametrizations.weight.0._u" in keys
    _randomize(block).eval()
    p = block.conv_0.parametrizations.weight
    w, u, v = p.original, p[0]._u, p[0]._v
    sigma = torch.dot(u, w.reshape(w.shape[0], -1) @ v)
    with torch.no_grad():
        assert_close(block.conv_0.weight, w / sigma)
        before = u.clone()
        block(torch.randn(1, 6, 4, 4), torch.rand(1, 3, 4, 4))
    assert torch.equal(p[0]._u, before)  # no power iteration in eval


def test_resblock_follows_dtype() -> None:
    block = _randomize(SPADEResnetBlock(6, 4, 3, nhidden=8)).eval().to(torch.bfloat16)
    out = block(torch.randn(1, 6, 4, 4, dtype=torch.bfloat16), torch.rand(1, 3, 4, 4, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_resblock_trains() -> None:
    block = SPADEResnetBlock(6, 4, 3, nhidden=8, spectral_norm=True).train()
    out = block(torch.randn(2, 6, 4, 4), torch.rand(2, 3, 4, 4))
    out.square().mean().backward()
    grads = [p.grad for p in block.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert block.norm_s.mlp_shared[0].weight.grad.abs().sum() > 0  # flows through the fused conv


def _onehot(n: int, labels: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, labels, (n, h, w), generator=torch.Generator().manual_seed(seed))
    return idx, F.one_hot(idx, labels).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_onehot_conv2d_equals_dense_conv(k: int) -> None:
    idx, seg = _onehot(2, 7, 6, 9)
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(5, 7, k, k, generator=g), torch.randn(5, generator=g)
    got = onehot_conv2d(idx, w, b, k // 2)
    assert_close(got, F.conv2d(seg, w, b, padding=k // 2), rtol=1e-5, atol=1e-5)
    assert onehot_conv2d(idx, w, None, 0).shape == (2, 5, 6 - k + 1, 9 - k + 1)
    extra = torch.randn(2, 2, 6, 9, generator=g)  # e.g. an edge map: any values
    w2 = torch.randn(5, 9, k, k, generator=g)
    got = onehot_conv2d(idx, w2, b, k // 2, extra)
    want = F.conv2d(torch.cat([seg, extra], dim=1), w2, b, padding=k // 2)
    assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_onehot_index_accepts_only_exact_one_hot() -> None:
    idx, seg = _onehot(1, 4, 3, 3)
    assert torch.equal(onehot_index(seg), idx)
    soft = seg * 0.5 + 0.125
    assert onehot_index(soft) is None
    signed = seg.clone()
    signed[0, :, 0, 0] = torch.tensor([1.0, 0.5, -0.5, 0.0])  # sums to 1 with max 1, not one-hot
    assert onehot_index(signed) is None


@pytest.mark.parametrize("soft", [False, True])
def test_resblock_onehot_hint_changes_nothing(soft: bool) -> None:
    plain = _randomize(SPADEResnetBlock(6, 4, 5, nhidden=8)).eval()
    hinted = SPADEResnetBlock(6, 4, 5, nhidden=8, onehot_nc=4).eval()
    hinted.load_state_dict(plain.state_dict())
    _, seg = _onehot(2, 4, 10, 10)
    edges = (torch.rand(2, 1, 10, 10, generator=torch.Generator().manual_seed(3)) > 0.7).float()
    seg = torch.cat([seg * 0.9 if soft else seg, edges], dim=1)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        assert_close(hinted(x, seg), plain(x, seg), rtol=1e-5, atol=1e-5)
