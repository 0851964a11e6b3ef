"""Panoptic generator (Dundar et al. 2020): structure, the documented choices, inputs, dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.layers.label_maps import one_hot
from imgsynth.layers.panoptic import PanopticAwareConv2d, PanopticAwareUpsample, panoptic_windows, resize_ids
from imgsynth.models import build_model, get_model
from imgsynth.models.panoptic import PanopticGenerator, PanopticResnetBlock
from imgsynth.models.spade import SPADEGenerator

from tolerance import assert_close

TINY = dict(label_nc=4, contain_dontcare=True, ngf=2, crop_size=32, aspect_ratio=1.0,
            num_upsampling_layers="normal", nhidden=8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(model: nn.Module) -> nn.Module:
    g = _gen(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / max(1, t[0].numel()) ** 0.5))
                if name.endswith("running_var"):
                    t.fill_(1.0)
    return model


def test_registered_with_pipeline_attributes():
    spec = get_model("panoptic")
    assert spec.task == "translate" and spec.cls is PanopticGenerator and spec.tiny == TINY
    m = build_model("panoptic", TINY)
    assert (m.label_nc, m.contain_dontcare, m.use_instance, m.use_panoptic, m.semantic_nc) == (4, True, False, True, 5)
    assert (m.sh, m.sw, m.scale) == (1, 1, 32) and m.output_size(7, 9) == (32, 32)
    d = PanopticGenerator()  # the paper's Cityscapes setting
    assert (d.semantic_nc, d.sh, d.sw, d.num_upsampling_layers) == (35, 4, 8, "more")


def test_which_convolutions_are_panoptic_aware():
    m = PanopticGenerator(**TINY)
    blocks = [m.head_0, m.G_middle_0, m.G_middle_1, m.up_0, m.up_1, m.up_2, m.up_3]
    for blk in blocks:
        assert isinstance(blk, PanopticResnetBlock)
        norms = [blk.norm_0, blk.norm_1] + ([blk.norm_s] if blk.learned_shortcut else [])
        for norm in norms:
            assert type(norm.mlp_shared[0]) is PanopticAwareConv2d
            assert type(norm.mlp_gamma_beta) is PanopticAwareConv2d
        assert type(blk.conv_0) is nn.Conv2d and type(blk.conv_1) is nn.Conv2d
    assert type(m.fc) is nn.Conv2d and type(m.conv_img) is nn.Conv2d
    assert type(PanopticGenerator(**TINY, panoptic_fc=True).fc) is PanopticAwareConv2d


@pytest.mark.parametrize("mode,channels", [
    ("normal", [32, 32, 16, 8, 4]), ("more", [32, 32, 32, 16, 8, 4]), ("most", [32, 32, 32, 16, 8, 4, 2]),
])
def test_one_panoptic_upsampling_per_nearest_upsampling(mode, channels):
    m = PanopticGenerator(**{**TINY, "num_upsampling_layers": mode, "latent_size": [1, 1]})
    assert all(type(u) is PanopticAwareUpsample for u in m.upsample)
    assert [u.hole_filling.out_channels for u in m.upsample] == channels
    assert all(u.hole_filling.in_channels == 5 and u.hole_filling.kernel_size == (3, 3) for u in m.upsample)


def test_state_dict_is_spade_plus_hole_filling():
    m = PanopticGenerator(**TINY)
    spade = SPADEGenerator(**{**TINY, "use_instance": False})
    ours, theirs = m.state_dict(), spade.state_dict()
    extra = set(ours) - set(theirs)
    assert set(theirs) <= set(ours) and extra and all(k.startswith("upsample.") for k in extra)
    assert all(ours[k].shape == theirs[k].shape for k in theirs)
    missing, unexpected = m.load_state_dict(theirs, strict=False)
    assert set(missing) == extra and not unexpected


@pytest.mark.parametrize("mode", ["normal", "more", "most"])
def test_forward_shape_and_range(mode):
    m = _randomize(PanopticGenerator(**{**TINY, "num_upsampling_layers": mode, "latent_size": [1, 1]})).eval()
    x, pan = m.dummy_inputs(1, _gen())
    assert x.shape == (1, 5, m.scale, m.scale) and pan.shape == (1, m.scale, m.scale)
    with torch.no_grad():
        y = m(x, pan)
    assert y.shape == (1, 3, m.scale, m.scale) and y.is_contiguous()
    assert y.abs().max() <= 1 and y.std() > 0.01


def test_eval_batch_independence():
    m = _randomize(PanopticGenerator(**TINY)).eval()
    x, pan = m.dummy_inputs(2, _gen())
    m.double()
    with torch.no_grad():
        assert_close(m(x[1:].double(), pan[1:]), m(x.double(), pan)[1:], rtol=1e-9, atol=1e-9)


def test_only_equality_of_ids_matters_and_instances_change_the_output():
    m = _randomize(PanopticGenerator(**TINY)).eval()
    label = torch.zeros(1, 32, 32, dtype=torch.long)
    label[:, 8:24, 4:28] = 2  # one class region ...
    inst = torch.zeros_like(label)
    inst[:, 8:24, 16:28] = 1  # ... made of two touching instances
    x = one_hot(label, 5)
    with torch.no_grad():
        y = m(x, label * 1000 + inst)
        relabelled = m(x, (label * 1000 + inst) * 7 - 123_456_789)  # a bijection of the ids
        merged = m(x, label)  # semantic map only: the two instances are one segment
    assert torch.equal(y, relabelled)
    assert (y - merged).abs().amax() > 1e-3


def test_resolutions_use_the_legacy_nearest_rule_from_the_full_map():
    m = _randomize(PanopticGenerator(**{**TINY, "latent_from_input": True})).eval()
    x, pan = m.dummy_inputs(1, _gen(1))
    pan = pan * 10 + torch.randint(0, 2, pan.shape, generator=_gen(2))  # fine detail
    seen = []
    for u in m.upsample:
        u.register_forward_pre_hook(lambda mod, args, kwargs: seen.append((args[1], args[2], args[3], kwargs)),
                                    with_kwargs=True)
    with torch.no_grad():
        m(x, pan)
    assert [tuple(a[0].shape[-2:]) for a in seen] == [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16)]
    for low, high, sem, kwargs in seen:
        size = tuple(high.shape[-2:])
        ref = F.interpolate(pan.double().unsqueeze(1), size=size, mode="nearest")[:, 0].long()
        assert torch.equal(high, ref) and torch.equal(low, resize_ids(pan, low.shape[-2:]))
        # S^u: the one-hot map at the higher resolution (given as its labels on CPU)
        assert torch.equal(sem, F.interpolate(x, size=size, mode="nearest").argmax(1))
        assert torch.equal(kwargs["hole_windows"].mask, panoptic_windows(high, 3, 1, 1).mask)


def test_block_label_and_dense_semantics_agree():
    blk = _randomize(PanopticResnetBlock(6, 4, 5, nhidden=8)).eval()
    g = _gen(4)
    x = torch.randn(2, 6, 8, 8, generator=g)
    labels = torch.randint(0, 5, (2, 8, 8), generator=g)
    win = panoptic_windows(torch.randint(0, 3, (2, 8, 8), generator=g), 3, 1, 1)
    with torch.no_grad():
        assert_close(blk(x, labels, win), blk(x, one_hot(labels, 5), win))


def test_block_uses_the_panoptic_convs_of_its_norms():
    # the block is SPADE's (Fig. 4 of Park et al.) with every branch conv given the windows
    blk = _randomize(PanopticResnetBlock(6, 4, 5, nhidden=8)).eval()
    g = _gen(5)
    x = torch.randn(1, 6, 8, 8, generator=g)
    seg = one_hot(torch.randint(0, 5, (1, 8, 8), generator=g), 5)
    win = panoptic_windows(torch.randint(0, 3, (1, 8, 8), generator=g), 3, 1, 1)

    def norm(n, h):
        hidden = F.relu(n.mlp_shared[0](seg, win))
        gamma, beta = n.mlp_gamma_beta(hidden, win).chunk(2, 1)
        return n.param_free_norm(h) * (1 + gamma) + beta

    with torch.no_grad():
        x_s = blk.conv_s(norm(blk.norm_s, x))
        dx = blk.conv_1(F.leaky_relu(norm(blk.norm_1, blk.conv_0(F.leaky_relu(norm(blk.norm_0, x), 0.2))), 0.2))
        assert_close(blk(x, seg, win), x_s + dx)


def test_panoptic_fc_and_other_kernel_sizes():
    for cfg in ({"panoptic_fc": True}, {"kernel_size": 5}, {"panoptic_fc": True, "kernel_size": 1}):
        m = _randomize(PanopticGenerator(**TINY, **cfg)).eval()
        x, pan = m.dummy_inputs(1, _gen())
        with torch.no_grad():
            assert torch.isfinite(m(x, pan)).all()
    with pytest.raises(ValueError, match="odd"):
        PanopticGenerator(**{**TINY, "kernel_size": 4})


def test_inputs_are_checked():
    m = PanopticGenerator(**TINY).eval()
    x, pan = m.dummy_inputs(1, _gen())
    with torch.no_grad():
        assert_close(m(x, pan.unsqueeze(1).int()), m(x, pan))
        with pytest.raises(ValueError, match="integer"):
            m(x, pan.float())
        with pytest.raises(ValueError, match="like the semantic map"):
            m(x, pan[:, :16])
        with pytest.raises(ValueError, match="semantic maps"):
            m(x[:, :4], pan)


def test_training_step_reaches_every_parameter_and_bf16_runs():
    m = PanopticGenerator(**{**TINY, "spectral_norm": True}).train()
    x, pan = m.dummy_inputs(2, _gen())
    # one-pixel segments first seen at grids 2, 4, 8, 16 and 32 (rows/cols 16, 8, 4, 6, 11 of
    # the 32x32 map): every upsampling has a hole to fill
    for i, p in enumerate((16, 8, 4, 6, 11)):
        pan[:, p, p] = 95 + i
    m(x, pan).square().mean().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad
    m16 = PanopticGenerator(**TINY).to(torch.bfloat16).eval()
    with torch.no_grad():
        y = m16(x, pan)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def test_area_latent_downsampling_and_its_limits():
    """``latent_downsample="area"``: the head fc reads the label fractions of each latent cell
    (on a 1x1 grid, of the whole map) instead of one label; not with ``panoptic_fc``."""
    cfg = {"label_nc": 3, "contain_dontcare": False, "ngf": 2, "crop_size": 32, "aspect_ratio": 1.0,
           "num_upsampling_layers": "normal", "nhidden": 8}
    model = build_model("panoptic", {**cfg, "latent_downsample": "area"})
    label = torch.zeros(3, 32, 32, dtype=torch.long)
    label[0, 8:20, 8:20] = 1
    label[1, 4:30, 10:14] = 2
    x = one_hot(label, 3)
    fc_in, norm_in = [], []
    hooks = [model.fc.register_forward_hook(lambda _m, i, _o: fc_in.append(i[0])),
             model.head_0.norm_0.param_free_norm.register_forward_hook(lambda _m, i, _o: norm_in.append(i[0]))]
    with torch.no_grad():
        model.train()(x, label * 10 + 1)
    for h in hooks:
        h.remove()
    assert_close(fc_in[0].float().contiguous(), x.mean((2, 3), keepdim=True))
    assert float(norm_in[0].var(0).min()) > 0  # the corner sample would give every map the same input
    with pytest.raises(ValueError, match="panoptic_fc"):
        build_model("panoptic", {**cfg, "latent_downsample": "area", "panoptic_fc": True})
    with pytest.raises(ValueError, match="latent_downsample must be one of"):
        build_model("panoptic", {**cfg, "latent_downsample": "max"})
