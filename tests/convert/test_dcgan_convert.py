"""DCGAN converters: pytorch/examples, GAN zoo and HugGAN layouts -> imgsynth ``dcgan``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imgsynth.convert import dcgan as conv
from imgsynth.convert import get_converter
from imgsynth.errors import WeightsError
from imgsynth.models import build_model

from tolerance import assert_close

MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "data"
CONFIG = {"z_dim": 12, "ngf": 4, "img_channels": 3, "img_resolution": 32, "output_activation": "tanh"}


def _source(config: dict = CONFIG, seed: int = 0) -> torch.nn.Module:
    model = build_model("dcgan", config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + (0.5 if "var" in name else -0.5))
    return model.eval()


def _to_ganzoo(sd: dict) -> dict:
    """Our keys -> GAN-zoo GNet keys (depth = number of ConvT layers - 2)."""
    convs = sorted(int(k.split(".")[1]) for k in sd if k.endswith("weight") and sd[k].dim() == 4)
    out = {}
    for key, value in sd.items():
        i, rest = int(key.split(".")[1]), key.split(".", 2)[2]
        if i == 0:
            out["formatLayer.weight"] = value
        elif i == convs[-1]:
            out["main.outlayer.weight"] = value
        elif i % 3 == 0:
            out[f"main.convTranspose{i // 3}.{rest}"] = value
        else:
            out[f"main.batchNorm{(i - 1) // 3}.{rest}"] = value
    return out


def _check_same(model: torch.nn.Module, state: dict, config: dict) -> None:
    target = build_model("dcgan", config)
    target.load_state_dict(state, strict=True)
    target.eval()
    z = torch.randn(3, config["z_dim"])
    assert_close(target(z), model(z))


def test_examples_roundtrip_and_legacy_batchnorm() -> None:
    src = _source()
    sd = src.state_dict()
    assert conv.infer_config(sd) == CONFIG
    _check_same(src, conv.from_examples(sd, CONFIG), CONFIG)
    legacy = {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    state = conv.from_examples(legacy, CONFIG)
    assert state["main.1.num_batches_tracked"].item() == 0
    _check_same(src, state, CONFIG)


def test_ganzoo_full_checkpoint_bare_netg_and_avg() -> None:
    src, avg = _source(), _source(seed=1)
    ckpt = {
        "config": {"lossCriterion": "DCGAN", "dimG": 4},
        "netG": _to_ganzoo(src.state_dict()),
        "avgG": _to_ganzoo(avg.state_dict()),
        "netD": {"main.convTranspose3.weight": torch.zeros(1)},
    }
    assert set(ckpt["netG"]) >= {"formatLayer.weight", "main.batchNorm0.running_var", "main.outlayer.weight"}
    assert conv.infer_config(ckpt) == CONFIG
    assert conv.infer_config(ckpt["netG"]) == CONFIG
    _check_same(src, conv.from_ganzoo(ckpt, CONFIG), CONFIG)
    _check_same(src, conv.from_ganzoo(ckpt["netG"], CONFIG), CONFIG)
    _check_same(avg, conv.from_ganzoo(ckpt, CONFIG, use_avg=True), CONFIG)
    assert get_converter("dcgan:from_ganzoo") is conv.from_ganzoo


def test_ganzoo_wgangp_config_means_no_tanh() -> None:
    cfg = dict(CONFIG, output_activation="none")
    src = _source(cfg)

    class ZooConfig:  # the zoo pickles an attribute object, not a dict
        lossCriterion = "WGANGP"

    ckpt = {"config": ZooConfig(), "netG": _to_ganzoo(src.state_dict())}
    assert conv.infer_config(ckpt) == cfg
    _check_same(src, conv.from_ganzoo(ckpt, cfg), cfg)


def test_huggan_layout() -> None:
    cfg = dict(CONFIG, img_channels=1, img_resolution=64)
    src = _source(cfg)
    hug = {k.replace("main.", "model.", 1): v for k, v in src.state_dict().items()}
    assert conv.infer_config(hug) == cfg
    _check_same(src, conv.from_huggan(hug, cfg), cfg)


def test_errors_are_weights_errors() -> None:
    sd = _source().state_dict()
    with pytest.raises(WeightsError, match="unrecognised"):
        conv.infer_config({"foo.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="does not fit"):
        conv.from_examples(sd, dict(CONFIG, img_resolution=64))
    with pytest.raises(WeightsError, match="shape"):
        conv.from_examples(sd, dict(CONFIG, ngf=8))
    with pytest.raises(WeightsError, match="avgG"):
        conv.from_ganzoo({"netG": _to_ganzoo(sd)}, CONFIG, use_avg=True)
    with pytest.raises(WeightsError):
        conv.from_huggan(sd, CONFIG)


@pytest.mark.parametrize("name", ["dcgan_examples", "dcgan_ganzoo_fashiongen"])
def test_released_full_key_layout(name: str) -> None:
    """The full released configs' key/shape lists (conformance manifests) convert and load."""
    path = MANIFESTS / f"{name}.manifest.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    full = json.loads(path.read_text())["full"]["state_dict"]
    with torch.device("meta"):
        sd = {k: torch.empty(v["shape"], dtype=getattr(torch, v["dtype"])) for k, v in full.items()}
        config = conv.infer_config(sd)
        state = (conv.from_examples if name == "dcgan_examples" else conv.from_ganzoo)(sd, config)
        model = build_model("dcgan", config)
    model.load_state_dict(state, strict=True, assign=True)
    assert config["img_resolution"] == 64
    assert config["z_dim"] == (100 if name == "dcgan_examples" else 120)


def test_loss_mode_parameter_and_from_any() -> None:
    """A bare GAN-zoo netG does not record lossCriterion: the loader takes it as a parameter."""
    cfg = dict(CONFIG, output_activation="none")
    src = _source(cfg)
    bare = _to_ganzoo(src.state_dict())
    assert conv.infer_config(bare)["output_activation"] == "tanh"
    assert conv.infer_config(bare, loss_mode="WGANGP") == cfg
    _check_same(src, conv.from_any(bare, cfg), cfg)
    _check_same(src, conv.from_any(src.state_dict(), cfg), cfg)
