"""naoto0804 / mmagic PConv U-Net checkpoints -> pconv_unet, round trips and failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imgsynth.convert import get_converter, pconv
from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model

from tolerance import assert_close

TINY = {"layer_size": 4, "input_channels": 3, "widths": [4, 6, 8, 8]}
MANIFESTS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "data"


def _model(**config) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("pconv_unet", {**TINY, **config})
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _to_naoto(model: torch.nn.Module) -> dict:
    """What naoto0804's util/io.py save_ckpt writes for this net."""
    sd = {}
    for k, v in model.state_dict().items():
        if ".conv." in k:
            layer, _, name = k.partition(".conv.")
            sd[f"{layer}.conv.input_conv.{name}"] = v.clone()
            if name == "weight":
                sd[f"{layer}.conv.mask_conv.weight"] = torch.ones_like(v)
        else:
            sd[k] = v.clone()
    return {"n_iter": 1000000, "model": sd, "optimizer": {"state": {}, "param_groups": []}}


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, 32, 16, generator=g) > 0.3).float().expand(-1, 3, -1, -1)
    x = torch.randn(1, 3, 32, 16, generator=g) * mask
    with torch.no_grad():
        assert_close(a(x, mask)[0], b(x, mask)[0], rtol=0, atol=0)


@pytest.mark.parametrize("wrapped", [True, False])
def test_naoto_round_trip(wrapped: bool) -> None:
    model = _model(renorm="naoto")
    ckpt = _to_naoto(model)
    if not wrapped:
        ckpt = ckpt["model"]
    config = pconv.infer_config(ckpt)
    assert config == {**TINY, "renorm": "naoto", "enc1_bias": False}
    loaded = build_model("pconv_unet", config).eval()
    loaded.load_state_dict(get_converter("pconv:from_naoto")(ckpt, config), strict=True)
    _same_outputs(model, loaded)


def test_mmagic_round_trip(mmagic_checkpoint) -> None:
    model = _model(renorm="nvidia", enc1_bias=True)
    ckpt = mmagic_checkpoint(model)
    config = pconv.infer_config(ckpt)
    assert config == {**TINY, "renorm": "nvidia", "enc1_bias": True}
    loaded = build_model("pconv_unet", config).eval()
    loaded.load_state_dict(pconv.from_mmagic(ckpt, config), strict=True)
    _same_outputs(model, loaded)


def test_wrong_keys_raise_weights_error() -> None:
    ckpt = _to_naoto(_model(renorm="naoto"))
    config = pconv.infer_config(ckpt)
    sd = dict(ckpt["model"])
    sd["dec_2.norm.weight"] = sd.pop("dec_2.bn.weight")
    with pytest.raises(WeightsError, match=r"1 missing \(e\.g\. dec_2\.bn\.weight\); 1 unexpected"):
        pconv.from_naoto(sd, config)
    with pytest.raises(WeightsError, match="not a PConv U-Net checkpoint"):
        pconv.infer_config({"main.0.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="missing"):
        pconv.from_mmagic(ckpt, config)  # a naoto file given to the mmagic converter


def test_config_that_does_not_fit_raises_weights_error() -> None:
    ckpt = _to_naoto(_model(renorm="naoto"))
    with pytest.raises(WeightsError, match="shape"):
        pconv.from_naoto(ckpt, {**TINY, "renorm": "naoto", "widths": [4, 6, 8, 16]})
    with pytest.raises(WeightsError, match="missing"):
        pconv.from_naoto(ckpt, {**TINY, "renorm": "naoto", "layer_size": 5})


def test_mask_kernel_that_is_not_all_ones_is_rejected() -> None:
    ckpt = _to_naoto(_model(renorm="naoto"))
    config = pconv.infer_config(ckpt)
    ckpt["model"]["enc_3.conv.mask_conv.weight"][0, 0, 0, 0] = 0.5
    with pytest.raises(WeightsError, match="enc_3.conv.mask_conv.weight should be an all-ones"):
        pconv.from_naoto(ckpt, config)


@pytest.mark.parametrize(("name", "layers"), [("pconv_unet_places2", 7), ("pconv_unet_paper512", 8)])
def test_released_key_layout(name: str, layers: int) -> None:
    """The released full-size key/shape lists (conformance manifests) convert and fit."""
    path = MANIFESTS / f"{name}.manifest.json"
    if not path.exists():
        pytest.skip(f"{path} not found (conformance data lives beside the repo)")
    spec = json.loads(path.read_text())["full"]["state_dict"]
    # zero-memory stand-ins with the released shapes
    sd = {
        k: torch.ones(()).expand(v["shape"]) if v["shape"] else torch.tensor(0)
        for k, v in spec.items()
    }
    config = pconv.infer_config({"n_iter": 1, "model": sd})
    assert config == {
        "renorm": "naoto", "layer_size": layers, "input_channels": 3,
        "widths": [64, 128, 256, 512], "enc1_bias": False,
    }
    out = pconv.from_naoto(sd, config)
    assert len(out) == len(spec) - 2 * layers  # the mask kernels are gone
