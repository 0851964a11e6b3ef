"""pix2pixHD global generator and local enhancer: structure, input encoding, pyramid (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.models import build_model, get_model
from imgsynth.models.pix2pixhd import GlobalGenerator, LocalEnhancer

from tolerance import assert_close

GLOBAL = get_model("pix2pixhd_global").tiny
LOCAL = get_model("pix2pixhd_local").tiny


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_with_pipeline_attributes() -> None:
    for name, cls in [("pix2pixhd_global", GlobalGenerator), ("pix2pixhd_local", LocalEnhancer)]:
        spec = get_model(name)
        assert spec.task == "translate" and spec.cls is cls
        m = build_model(name, spec.tiny)
        assert (m.label_nc, m.use_instance, m.input_nc) == (4, True, 5)
    m = build_model("pix2pixhd_global", {**GLOBAL, "use_instance": False})
    assert m.input_nc == 4 and m.stem.conv.in_channels == 4
    m = build_model("pix2pixhd_global", {**GLOBAL, "label_nc": 0, "image_nc": 3})
    assert m.input_nc == 4  # RGB + instance edges


def test_dummy_inputs_are_one_hot_labels_and_edges() -> None:
    m = build_model("pix2pixhd_global", GLOBAL)
    (x,) = m.dummy_inputs(2, _gen())
    assert x.shape[:2] == (2, 5)
    assert_close(x[:, :4].sum(1), torch.ones(2, *x.shape[-2:]))
    assert set(x[:, 4].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name,cfg", [("pix2pixhd_global", GLOBAL), ("pix2pixhd_local", LOCAL)])
def test_forward_shape_and_range(name: str, cfg: dict) -> None:
    torch.manual_seed(0)
    m = build_model(name, cfg)
    (x,) = m.dummy_inputs(2, _gen())
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 3, *x.shape[-2:])
    assert y.abs().max() <= 1.0 and y.std() > 0.01


def test_released_parameter_counts() -> None:
    # label2city_512p (global, ngf 64) and label2city_1024p (local, ngf 32), official manifests
    with torch.device("meta"):
        g = build_model("pix2pixhd_global", {})
        l = build_model("pix2pixhd_local", {})
    assert sum(p.numel() for p in g.parameters()) == 182_546_755
    assert sum(p.numel() for p in l.parameters()) == 182_857_059
    assert g.stem.conv.in_channels == 36 and len(g.down) == 4 and len(g.blocks) == 9
    assert l.global_net.stem.conv.out_channels == 64 and len(l.enhancers[0].blocks) == 3


def test_instance_norm_is_mode_independent() -> None:
    torch.manual_seed(0)
    m = build_model("pix2pixhd_local", LOCAL)
    (x,) = m.dummy_inputs(1, _gen())
    with torch.no_grad():
        a = m.train()(x)
        b = m.eval()(x)
    assert_close(a, b, rtol=0, atol=0)


def test_local_enhancer_combines_global_and_local_paths() -> None:
    torch.manual_seed(0)
    m = build_model("pix2pixhd_local", LOCAL)
    (x,) = m.dummy_inputs(1, _gen())
    with torch.no_grad():
        ref = m(x)
        # (biases would be cancelled by the InstanceNorm that follows; perturb weights)
        w = m.global_net.up[-1].conv.weight
        w.add_(torch.randn(w.shape, generator=_gen(1)))  # the coarse result enters the sum
        changed_global = m(x)
        w = m.enhancers[0].stem.conv.weight
        w.add_(torch.randn(w.shape, generator=_gen(2)))  # so does the full-resolution front-end
        changed_local = m(x)
    assert (changed_global - ref).abs().max() > 1e-4
    assert (changed_local - changed_global).abs().max() > 1e-4


def test_two_local_enhancers() -> None:
    torch.manual_seed(0)
    m = build_model("pix2pixhd_local", {**LOCAL, "n_local_enhancers": 2})
    assert m.enhancers[0].head is None and m.enhancers[1].head is not None
    assert m.global_net.stem.conv.out_channels == LOCAL["ngf"] * 4
    (x,) = m.dummy_inputs(1, _gen())
    assert m(x).shape == (1, 3, *x.shape[-2:])


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="n_local_enhancers"):
        build_model("pix2pixhd_local", {**LOCAL, "n_local_enhancers": 0})
    with pytest.raises(ConfigError, match="norm"):
        build_model("pix2pixhd_global", {**GLOBAL, "norm": "group"})


def test_gradients_and_bfloat16() -> None:
    torch.manual_seed(0)
    m = build_model("pix2pixhd_local", LOCAL)
    (x,) = m.dummy_inputs(1, _gen())
    m(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    mb = build_model("pix2pixhd_global", GLOBAL).to(torch.bfloat16)
    (xb,) = mb.dummy_inputs(1, _gen())
    y = mb(xb)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def _plain_block(block, h: torch.Tensor) -> torch.Tensor:
    """A ConvBlock / ResnetBlock through its modules as they are (NCHW, no CPU fast paths)."""
    if hasattr(block, "conv1"):
        r = torch.relu(block.norm1(block.conv1(h)))
        return h + block.norm2(block.conv2(r))
    return torch.relu(block.norm(block.conv(h)))


def _plain_local(m: LocalEnhancer, x: torch.Tensor) -> torch.Tensor:
    pyramid = [x]
    for _ in range(m.n_local_enhancers):
        pyramid.append(torch.nn.functional.avg_pool2d(pyramid[-1], 3, 2, 1, count_include_pad=False))
    g = m.global_net
    h = _plain_block(g.stem, pyramid[-1])
    for block in [*g.down, *g.blocks, *g.up]:
        h = _plain_block(block, h)
    for k, stage in enumerate(m.enhancers):
        e = _plain_block(stage.down, _plain_block(stage.stem, pyramid[m.n_local_enhancers - 1 - k])) + h
        for block in [*stage.blocks, stage.up]:
            e = _plain_block(block, e)
        h = torch.tanh(stage.head(e)) if stage.head is not None else e
    return h


def test_cpu_fast_paths_match_plain_modules() -> None:
    # GEMM / channels-last convolutions and instance norms as group norms vs the modules as they are
    torch.manual_seed(0)
    m = build_model("pix2pixhd_local", {**get_model("pix2pixhd_local").tiny, "ngf": 8}).eval()
    (x,) = m.dummy_inputs(2, _gen())
    with torch.inference_mode():
        y = m(x)
        ref = _plain_local(m, x)
    assert_close(y, ref, atol=1e-5, rtol=1e-4)
    assert y.is_contiguous()
    assert "_weight_cache_cl" not in m.global_net.blocks[0].conv1.__dict__
