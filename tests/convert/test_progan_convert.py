"""GAN-zoo PGAN checkpoints -> imgsynth ``progan``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imgsynth.convert import progan as conv
from imgsynth.errors import WeightsError
from imgsynth.models import build_model

from tolerance import assert_close

MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "data"
CONFIG = {
    "z_dim": 8,
    "channels": [8, 8, 6],
    "img_channels": 3,
    "negative_slope": 0.2,
    "use_pixel_norm": True,
    "output_activation": "none",
}


def _source(config: dict = CONFIG, seed: int = 0) -> torch.nn.Module:
    model = build_model("progan", config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def _check_same(model: torch.nn.Module, state: dict, config: dict) -> None:
    target = build_model("progan", config)
    target.load_state_dict(state, strict=True)
    z = torch.randn(2, config["z_dim"])
    with torch.no_grad():
        assert_close(target.eval()(z), model(z))


def test_full_checkpoint_bare_and_avg() -> None:
    src, avg = _source(), _source(seed=1)
    ckpt = {"config": {"lossCriterion": "WGANGP"}, "netG": src.state_dict(), "avgG": avg.state_dict(), "netD": {}}
    assert conv.infer_config(ckpt) == CONFIG
    assert conv.infer_config(ckpt["netG"]) == CONFIG
    _check_same(src, conv.from_ganzoo(ckpt, CONFIG), CONFIG)
    _check_same(src, conv.from_ganzoo(ckpt["netG"], CONFIG), CONFIG)
    _check_same(avg, conv.from_ganzoo(ckpt, CONFIG, use_avg=True), CONFIG)


def test_zoo_config_options() -> None:
    cfg = dict(CONFIG, output_activation="tanh", negative_slope=0.1, use_pixel_norm=False)
    src = _source(cfg)

    class ZooConfig:
        lossCriterion = "DCGAN"
        leakyReluLeak = 0.1
        perChannelNormalization = False

    ckpt = {"config": ZooConfig(), "netG": src.state_dict()}
    assert conv.infer_config(ckpt) == cfg
    _check_same(src, conv.from_ganzoo(ckpt, cfg), cfg)


def test_errors() -> None:
    sd = _source().state_dict()
    with pytest.raises(WeightsError, match="not a GAN-zoo PGAN"):
        conv.infer_config({"main.0.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="does not fit"):
        conv.from_ganzoo(sd, dict(CONFIG, channels=[8, 8]))
    with pytest.raises(WeightsError, match="shape"):
        conv.from_ganzoo(sd, dict(CONFIG, z_dim=16))
    gap = {k: v for k, v in sd.items() if not k.startswith("scaleLayers.0.")}
    with pytest.raises(WeightsError, match="non-contiguous"):
        conv.infer_config(gap)
    with pytest.raises(WeightsError, match="avgG"):
        conv.from_ganzoo({"netG": sd}, CONFIG, use_avg=True)


@pytest.mark.parametrize("name,res", [("pgan_celebahq256", 256), ("pgan_celebahq512", 512)])
def test_released_full_key_layout(name: str, res: int) -> None:
    """The released configs' key/shape lists (conformance manifests) give the right config."""
    path = MANIFESTS / f"{name}.manifest.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    full = json.loads(path.read_text())["full"]["state_dict"]
    with torch.device("meta"):
        sd = {k: torch.empty(v["shape"]) for k, v in full.items()}
        config = conv.infer_config(sd)
        state = conv.from_ganzoo(sd, config)
        model = build_model("progan", config)
    model.load_state_dict(state, strict=True, assign=True)
    assert model.img_resolution == res and config["z_dim"] == 512
    assert config["channels"][:4] == [512] * 4 and config["channels"][-1] == (64 if res == 256 else 32)


def test_options_as_parameters_for_a_bare_generator() -> None:
    """What a full checkpoint's config records can be passed for a bare netG; a given value wins."""
    cfg = dict(CONFIG, output_activation="tanh", negative_slope=0.1, use_pixel_norm=False)
    src = _source(cfg)
    got = conv.infer_config(src.state_dict(), loss_mode="DCGAN", pixel_norm=False, leaky_relu_leak=0.1)
    assert got == cfg
    assert conv.infer_config({"config": {"lossCriterion": "DCGAN"}, "netG": src.state_dict()},
                             loss_mode="WGANGP")["output_activation"] == "none"
    _check_same(src, conv.from_ganzoo(src.state_dict(), cfg), cfg)
