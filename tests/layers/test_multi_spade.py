"""Multi-condition SPADE, hyper convolutions, the label embedder and the flow network (imaginaire blocks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imgsynth.layers.multi_spade import FlowNetwork, LabelEmbedder, MultiSPADE, SPADEResBlock, hyper_conv2d

torch.manual_seed(0)


def test_hyper_conv_is_a_per_sample_conv():
    x = torch.randn(3, 4, 5, 6)
    w, b = torch.randn(3, 7, 4, 3, 3), torch.randn(3, 7)
    got = hyper_conv2d(x, w, b, padding=1)
    want = torch.cat([F.conv2d(x[i : i + 1], w[i], b[i], padding=1) for i in range(3)])
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(hyper_conv2d(x, w, None, 1), want - b[:, :, None, None], atol=1e-5)


def test_conditions_apply_in_sequence_and_none_is_skipped():
    spade = MultiSPADE(4, [3, 2]).eval()
    x, c0, c1 = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 4, 4), torch.randn(2, 2, 8, 8)
    norm = F.instance_norm(x)
    g0, b0 = spade.mlps[0](F.interpolate(c0, size=(8, 8), mode="nearest")).chunk(2, 1)
    g1, b1 = spade.mlps[1](c1).chunk(2, 1)
    first = norm * (1 + g0) + b0
    assert torch.allclose(spade(x, [c0]), first, atol=1e-5)
    assert torch.allclose(spade(x, [c0, None]), first, atol=1e-5)
    assert torch.allclose(spade(x, [c0, c1]), first * (1 + g1) + b1, atol=1e-5)


def test_hyper_slot_uses_the_given_weights():
    spade = MultiSPADE(4, [None, 2])
    assert [k for k in spade.state_dict()] == ["mlps.1.weight", "mlps.1.bias"]
    x, c = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8)
    w, b = torch.randn(2, 8, 3, 1, 1), torch.randn(2, 8)
    g, beta = hyper_conv2d(c, w, b, 0).chunk(2, 1)
    assert torch.allclose(spade(x, [c], (w, b)), F.instance_norm(x) * (1 + g) + beta, atol=1e-5)
    with pytest.raises(ValueError, match="generated weights"):
        spade(x, [c])


def test_res_block_shortcut_only_when_widths_differ():
    assert SPADEResBlock(8, 8, [3]).conv_block_s is None
    block = SPADEResBlock(8, 4, [3])
    assert block.conv_block_s is not None and block.conv_block_0.conv.out_channels == 4
    assert block(torch.randn(2, 8, 6, 6), [torch.randn(2, 3, 6, 6)]).shape == (2, 4, 6, 6)


@pytest.mark.parametrize("arch, ups", [("encoder", 0), ("encoderdecoder", 3), ("unet", 3)])
def test_embedder_levels(arch, ups):
    emb = LabelEmbedder(5, 4, 3, arch=arch, max_num_filters=16)
    outs = emb(torch.randn(2, 5, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    assert sum(1 for k in emb.state_dict() if k.startswith("up_")) == 2 * ups


def test_embedder_hyper_decoder_convs_take_generated_weights():
    emb = LabelEmbedder(1, 4, 2, num_hyper_layers=2)
    assert not any(k.startswith("up_") for k in emb.state_dict())
    weights = [(torch.randn(2, 4, 8, 3, 3), torch.randn(2, 4)), (torch.randn(2, 8, 16, 3, 3), torch.randn(2, 8))]
    outs = emb(torch.randn(2, 1, 16, 16), weights)
    assert [o.shape[1] for o in outs] == [4, 8, 16]


def test_flow_network_shapes_and_ranges():
    net = FlowNetwork([("down_lbl", 6), ("down_img", 3)], num_filters=4, max_num_filters=16, num_downsamples=2,
                      num_res_blocks=1, res_order="CNACN", multiplier=20)
    flow, mask = net(torch.randn(2, 6, 16, 16), torch.randn(2, 3, 16, 16))
    assert flow.shape == (2, 2, 16, 16) and mask.shape == (2, 1, 16, 16)
    assert 0 <= float(mask.detach().min()) and float(mask.detach().max()) <= 1
    with pytest.raises(ValueError):
        FlowNetwork([("x", 1)], num_filters=4, max_num_filters=8, num_downsamples=1, num_res_blocks=1,
                    res_order="CCC", multiplier=1)
