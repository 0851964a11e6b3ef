"""NVIDIA pix2pixHD converters against official-layout replicas of GlobalGenerator / LocalEnhancer.

The replicas rebuild the official ``model.<i>`` / ``model{n}_1`` / ``model{n}_2`` Sequentials from
the structure in ../shared/conformance/README.md, so configurations beyond the stored cases
(batch norm, two enhancers, other depths) are checked number for number.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.convert.pix2pixhd import (
    convert_nvidia,
    from_nvidia,
    from_nvidia_global,
    from_nvidia_local,
    infer_arch,
    infer_config,
)
from imgsynth.errors import WeightsError
from imgsynth.models import build_model

from tolerance import NETWORK, assert_close

DATA = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "data"


def _norm(norm: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if norm == "batch" else nn.InstanceNorm2d(c)


class _ResBlock(nn.Module):
    def __init__(self, dim, norm):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(norm, dim), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(norm, dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


def _global_layers(input_nc, output_nc, ngf, n_down, n_blocks, norm) -> list[nn.Module]:
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _norm(norm, ngf), nn.ReLU()]
    for i in range(n_down):
        layers += [nn.Conv2d(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, 1), _norm(norm, ngf * 2 ** (i + 1)), nn.ReLU()]
    layers += [_ResBlock(ngf * 2**n_down, norm) for _ in range(n_blocks)]
    for i in range(n_down):
        cin = ngf * 2 ** (n_down - i)
        layers += [nn.ConvTranspose2d(cin, cin // 2, 3, 2, 1, output_padding=1), _norm(norm, cin // 2), nn.ReLU()]
    return layers + [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]


class _OfficialGlobal(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_down, n_blocks, norm="instance"):
        super().__init__()
        self.model = nn.Sequential(*_global_layers(input_nc, output_nc, ngf, n_down, n_blocks, norm))

    def forward(self, x):
        return self.model(x)


class _OfficialLocal(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_down, n_blocks, n_local, n_blocks_local, norm="instance"):
        super().__init__()
        self.n_local = n_local
        trunk = _global_layers(input_nc, output_nc, ngf * 2**n_local, n_down, n_blocks, norm)[:-3]
        self.model = nn.Sequential(*trunk)
        for n in range(1, n_local + 1):
            c = ngf * 2 ** (n_local - n)
            front = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, c, 7), _norm(norm, c), nn.ReLU(),
                     nn.Conv2d(c, 2 * c, 3, 2, 1), _norm(norm, 2 * c), nn.ReLU()]
            back = [_ResBlock(2 * c, norm) for _ in range(n_blocks_local)]
            back += [nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1), _norm(norm, c), nn.ReLU()]
            if n == n_local:
                back += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))

    def forward(self, x):
        pyramid = [x]
        for _ in range(self.n_local):
            pyramid.append(F.avg_pool2d(pyramid[-1], 3, 2, 1, count_include_pad=False))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local + 1):
            x_n = pyramid[self.n_local - n]
            out = getattr(self, f"model{n}_2")(getattr(self, f"model{n}_1")(x_n) + out)
        return out


def _randomize(net: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif t.dim() == 4:
                t.copy_(torch.randn(t.shape, generator=g) * 1.4 / (t[0].numel()) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return net.state_dict()


def _load(sd: dict, **hints) -> nn.Module:
    cfg = infer_config(sd, **hints)
    model = build_model(infer_arch(sd), cfg)
    model.load_state_dict(from_nvidia(sd, cfg), strict=True)
    return model


def _labels(n: int, size: tuple[int, int]) -> torch.Tensor:
    return (torch.rand(1, n, *size, generator=torch.Generator().manual_seed(1)) > 0.7).float()


@pytest.mark.parametrize("n_down,n_blocks,norm", [(2, 2, "instance"), (3, 1, "batch"), (1, 0, "instance")])
def test_global_matches_official_layout_replica(n_down: int, n_blocks: int, norm: str) -> None:
    official = _OfficialGlobal(6, 3, 4, n_down, n_blocks, norm)
    sd = _randomize(official)
    cfg = infer_config(sd)
    assert cfg == dict(use_instance=True, label_nc=5, n_downsample_global=n_down, n_blocks_global=n_blocks,
                       norm=norm, ngf=4, output_nc=3)
    model = _load(sd)
    x = _labels(6, (16, 24))
    with torch.no_grad():
        official.eval(), model.eval()
        assert_close(model(x), official(x), NETWORK)  # a whole network, another op order


@pytest.mark.parametrize("n_local,n_blocks_local,norm", [(1, 2, "instance"), (2, 1, "instance"), (1, 1, "batch")])
def test_local_matches_official_layout_replica(n_local: int, n_blocks_local: int, norm: str) -> None:
    official = _OfficialLocal(6, 3, 2, 2, 1, n_local, n_blocks_local, norm)
    sd = _randomize(official)
    cfg = infer_config(sd)
    assert (cfg["ngf"], cfg["n_local_enhancers"], cfg["n_blocks_local"], cfg["n_downsample_global"]) == (
        2, n_local, n_blocks_local, 2)
    model = _load(sd)
    x = _labels(6, (32, 48))
    with torch.no_grad():
        official.eval(), model.eval()
        assert_close(model(x), official(x), NETWORK)  # a whole network, another op order


def test_use_instance_hint_sets_the_label_split() -> None:
    sd = _randomize(_OfficialGlobal(6, 3, 4, 1, 1))
    assert infer_config(sd)["label_nc"] == 5
    cfg = infer_config(sd, use_instance=False)
    assert (cfg["label_nc"], cfg["use_instance"]) == (6, False)
    assert build_model("pix2pixhd_global", cfg).input_nc == 6


def test_extra_keys_are_dropped_and_named() -> None:
    sd = dict(_randomize(_OfficialGlobal(6, 3, 4, 1, 1)))
    sd["model.2.running_mean"] = torch.zeros(4)  # legacy InstanceNorm buffer
    sd["netD.weight"] = torch.zeros(1)  # anything else the official loader would skip
    cfg = infer_config(sd)
    state_dict, dropped = convert_nvidia(sd, cfg)
    assert sorted(dropped) == ["model.2.running_mean", "netD.weight"]
    with pytest.warns(UserWarning, match="ignored 2 key"):
        from_nvidia(sd, cfg)
    build_model("pix2pixhd_global", cfg).load_state_dict(state_dict, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_nvidia(_randomize(_OfficialGlobal(6, 3, 4, 1, 1)), cfg)  # clean: no warning


def test_wrong_checkpoints_raise_weights_error() -> None:
    sd = dict(_randomize(_OfficialGlobal(6, 3, 4, 1, 1)))
    cfg = infer_config(sd)
    with pytest.raises(WeightsError, match="missing"):
        from_nvidia({k: v for k, v in sd.items() if k != "model.1.bias"}, cfg)
    with pytest.raises(WeightsError, match="shape"):
        from_nvidia(sd, {**cfg, "ngf": 8})
    with pytest.raises(WeightsError, match="pix2pixhd_local"):
        from_nvidia_global(_randomize(_OfficialLocal(6, 3, 2, 1, 1, 1, 1)), cfg)
    with pytest.raises(WeightsError, match="pix2pixhd_global"):
        from_nvidia_local(sd, cfg)
    with pytest.raises(WeightsError, match="latest_net_G"):
        infer_arch({"foo.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    "name,arch,expected",
    [
        ("pix2pixhd_global_512p", "pix2pixhd_global",
         dict(label_nc=35, use_instance=True, ngf=64, n_downsample_global=4, n_blocks_global=9, norm="instance")),
        ("pix2pixhd_local_1024p", "pix2pixhd_local",
         dict(label_nc=35, ngf=32, n_downsample_global=4, n_blocks_global=9, n_local_enhancers=1, n_blocks_local=3)),
    ],
)
def test_released_key_layout_converts(name: str, arch: str, expected: dict) -> None:
    """The full released configs' key/shape lists (manifest ``full.state_dict``) convert strictly."""
    path = DATA / f"{name}.manifest.json"
    if not path.exists():
        pytest.skip(f"{DATA} not present")
    manifest = json.loads(path.read_text())
    sd = {k: torch.empty(v["shape"], dtype=getattr(torch, v["dtype"]), device="meta")
          for k, v in manifest["full"]["state_dict"].items()}
    assert infer_arch(sd) == arch
    cfg = infer_config(sd)
    assert {k: cfg[k] for k in expected} == expected
    state_dict, dropped = convert_nvidia(sd, cfg)
    assert not dropped and len(state_dict) == len(sd)
