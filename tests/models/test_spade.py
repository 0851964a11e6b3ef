"""SPADE generator: structure, output-size rule, style encoder, dtypes (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from imgsynth.models import build_model, get_model
from imgsynth.models.spade import SPADEGenerator, latent_grid

from tolerance import assert_close

TINY = dict(label_nc=5, contain_dontcare=True, use_instance=True, ngf=2, crop_size=64, nhidden=8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    g = _gen(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / max(1, t[0].numel()) ** 0.5))
                if name.endswith("running_var"):
                    t.fill_(1.0)
    return model


def test_registered_with_pipeline_attributes() -> None:
    spec = get_model("spade")
    assert spec.task == "translate" and spec.cls is SPADEGenerator
    m = build_model("spade", TINY)
    assert (m.label_nc, m.contain_dontcare, m.use_instance, m.semantic_nc) == (5, True, True, 7)
    assert (m.sh, m.sw) == (2, 2) and m.output_size(64, 64) == (64, 64)


@pytest.mark.parametrize(
    "crop,aspect,mode,grid,out",
    [(512, 2.0, "more", (4, 8), (256, 512)), (256, 1.0, "normal", (8, 8), (256, 256)),
     (256, 1.0, "most", (2, 2), (256, 256)), (128, 2.0, "more", (1, 2), (64, 128))],
)
def test_latent_grid_rule(crop: int, aspect: float, mode: str, grid: tuple, out: tuple) -> None:
    assert latent_grid(crop, aspect, mode) == grid
    m = SPADEGenerator(**{**TINY, "crop_size": crop, "aspect_ratio": aspect, "num_upsampling_layers": mode})
    assert (m.sh, m.sw) == grid and m.output_size(1, 1) == out


@pytest.mark.parametrize("mode", ["normal", "more", "most"])
def test_forward_shape_range_and_blocks(mode: str) -> None:
    m = _randomize(SPADEGenerator(**{**TINY, "num_upsampling_layers": mode, "latent_size": [1, 1]})).eval()
    (x,) = m.dummy_inputs(2, _gen())
    assert m.output_size(0, 0) == (m.scale, m.scale) and m.scale == {"normal": 32, "more": 64, "most": 128}[mode]
    assert x.shape == (2, 7, *m.output_size(0, 0))
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 3, *m.output_size(0, 0)) and y.is_contiguous()
    assert y.abs().max() <= 1 and y.std() > 0.01
    assert hasattr(m, "up_4") == (mode == "most")
    # eval uses running statistics: each sample is independent of the batch (float64 so that
    # only a real dependence, not a different summation order, could show)
    m.double()
    with torch.no_grad():
        assert_close(m(x[1:].double()), m(x.double())[1:], rtol=1e-9, atol=1e-9)


def test_input_size_does_not_change_the_grid_unless_asked() -> None:
    m = _randomize(SPADEGenerator(**TINY)).eval()
    (x,) = m.dummy_inputs(1, _gen())
    with torch.no_grad():
        assert m(x[..., :48, :40]).shape[-2:] == (64, 64)
    a = _randomize(SPADEGenerator(**TINY, latent_from_input=True)).eval()
    assert a.output_size(96, 32) == (96, 32)
    with torch.no_grad():
        assert a(torch.zeros(1, 7, 96, 32)).shape[-2:] == (96, 32)
        assert_close(a(x), m(x))  # same grid at the trained size
    with pytest.raises(ValueError, match="multiple of 32"):
        a.output_size(50, 64)


def test_rejects_wrong_inputs() -> None:
    m = SPADEGenerator(**TINY).eval()
    with pytest.raises(ValueError, match="expected 7 label channels"):
        m(torch.zeros(1, 6, 64, 64))
    with pytest.raises(ValueError, match="only used with use_vae"):
        m(torch.zeros(1, 7, 64, 64), torch.zeros(1, 256))
    with pytest.raises(ValueError, match="latent_from_input"):
        SPADEGenerator(**TINY, use_vae=True, latent_from_input=True)
    with pytest.raises(ValueError, match="num_upsampling_layers"):
        SPADEGenerator(**TINY, num_upsampling_layers="many")


def test_state_dict_has_plain_weights() -> None:
    keys = set(SPADEGenerator(**TINY).state_dict())
    assert "fc.weight" in keys and "conv_img.bias" in keys
    assert "up_0.conv_s.weight" in keys and "head_0.conv_s.weight" not in keys
    assert "up_3.norm_1.mlp_gamma_beta.weight" in keys
    assert not any("weight_orig" in k or "parametrizations" in k for k in keys)
    sn = set(SPADEGenerator(**TINY, spectral_norm=True).state_dict())
    assert "up_0.conv_s.parametrizations.weight.original" in sn


def test_style_encoder_and_z_path() -> None:
    m = _randomize(SPADEGenerator(**TINY, use_vae=True, z_dim=16)).eval()
    assert isinstance(m.fc, torch.nn.Linear) and m.fc.out_features == 16 * 2 * 2 * 2
    style = torch.rand(2, 3, 40, 48, generator=_gen(1)) * 2 - 1
    with torch.no_grad():
        mu, logvar = m.encode(style)
        assert mu.shape == logvar.shape == (2, 16)
        (x,) = m.dummy_inputs(2, _gen())
        y_mu = m(x, mu)
        assert torch.equal(y_mu, m(x, mu))
        assert not torch.allclose(y_mu, m(x, mu + 1))  # the style code matters
        torch.manual_seed(0)
        assert m(x).shape == (2, 3, 64, 64)  # z drawn when omitted
    assert {"encoder.layer6.0.weight", "encoder.fc_mu.weight", "encoder.fc_var.bias"} <= set(m.state_dict())
    with pytest.raises(ValueError, match="no style encoder"):
        SPADEGenerator(**TINY).encode(style)


def test_bfloat16() -> None:
    m = _randomize(SPADEGenerator(**TINY)).eval().to(torch.bfloat16)
    (x,) = m.dummy_inputs(1, _gen())
    with torch.no_grad():
        y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_trains_with_spectral_norm() -> None:
    m = SPADEGenerator(**TINY, spectral_norm=True).train()
    (x,) = m.dummy_inputs(2, _gen())
    m(x).mean().backward()
    assert m.head_0.conv_0.parametrizations.weight.original.grad is not None
    assert m.up_3.norm_1.mlp_shared[0].weight.grad is not None


def _head_norm_input(model: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """What the first BatchNorm (head_0.norm_0) sees in a training-mode forward."""
    seen = []
    hook = model.head_0.norm_0.param_free_norm.register_forward_hook(lambda _m, i, _o: seen.append(i[0]))
    model.train()
    with torch.no_grad():
        model(*inputs)
    hook.remove()
    return seen[0]


def test_area_latent_downsampling_reads_the_whole_label_map() -> None:
    """On a 1x1 latent grid (32x32 output) the official nearest sample is the top-left pixel:
    maps with a background corner all give fc the same input, so the first BatchNorm sees zero
    batch variance (the eval-mode collapse of the SPADE mosaic baseline). ``"area"`` gives fc
    the label fractions of the whole map instead."""
    from imgsynth.layers.label_maps import one_hot

    cfg = {"label_nc": 3, "contain_dontcare": False, "use_instance": False, "ngf": 2, "crop_size": 32, "nhidden": 8}
    label = torch.zeros(4, 32, 32, dtype=torch.long)
    label[0, 8:20, 8:20] = 1
    label[1, 4:30, 10:14] = 2
    label[2, 16:, 16:] = 1
    x = one_hot(label, 3)
    torch.manual_seed(0)
    official = build_model("spade", cfg)
    assert official.latent_downsample == "nearest" and (official.sh, official.sw) == (1, 1)
    assert float(_head_norm_input(official, x).var(0).max()) == 0.0

    area = build_model("spade", {**cfg, "latent_downsample": "area"})
    area.load_state_dict(official.state_dict())  # same keys: only the resizing differs
    fc_in = []
    hook = area.fc.register_forward_hook(lambda _m, i, _o: fc_in.append(i[0]))
    assert float(_head_norm_input(area, x).var(0).min()) > 0
    hook.remove()
    assert_close(fc_in[0], x.mean((2, 3), keepdim=True))
    # at a latent grid larger than 1x1 it is the mean over each cell
    big = build_model("spade", {**cfg, "crop_size": 64, "latent_downsample": "area"})
    fc_in.clear()
    hook = big.fc.register_forward_hook(lambda _m, i, _o: fc_in.append(i[0]))
    big.eval()(one_hot(torch.randint(0, 3, (1, 64, 64), generator=_gen()), 3))
    hook.remove()
    assert fc_in[0].shape == (1, 3, 2, 2)
    assert_close(fc_in[0].sum(1), torch.ones(1, 2, 2))


def test_latent_downsample_is_checked() -> None:
    with pytest.raises(ValueError, match="latent_downsample must be one of"):
        build_model("spade", {**TINY, "latent_downsample": "bilinear"})
    with pytest.raises(ValueError, match="without use_vae"):
        build_model("spade", {**TINY, "use_vae": True, "latent_downsample": "area"})
