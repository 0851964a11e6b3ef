"""junyanz pix2pix U-Net / CycleGAN ResNet converters against official-layout replicas.

The replicas below rebuild the official module nesting from the structure described in
../shared/conformance/README.md (same key names, same order of operations), so the converted
imgsynth model can be compared number for number on configurations the stored conformance
cases do not cover (instance norm, unet_128, dropout, zero padding, batch-norm ResNets).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from imgsynth.convert.pix2pix import (
    from_junyanz,
    from_junyanz_resnet,
    from_junyanz_unet,
    infer_arch,
    infer_config,
)
from imgsynth.errors import WeightsError
from imgsynth.models import build_model

from tolerance import NETWORK, assert_close

DATA = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "data"


def _norm(norm: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if norm == "batch" else nn.InstanceNorm2d(c)


class _UnetBlock(nn.Module):
    """Official-layout UnetSkipConnectionBlock replica (keys ``model.<i>``, nested submodule)."""

    def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False, norm="batch", dropout=False):
        super().__init__()
        bias = norm == "instance"
        down = nn.Conv2d(input_nc or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2), down, _norm(norm, inner), sub, nn.ReLU(),
                      nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
            layers += [nn.Dropout(0.5)] if dropout else []
        self.outermost = outermost
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class _OfficialUnet(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm="batch", dropout=True):
        super().__init__()
        blk = _UnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            blk = _UnetBlock(ngf * 8, ngf * 8, sub=blk, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):
            blk = _UnetBlock(ngf * mult, ngf * mult * 2, sub=blk, norm=norm)
        self.model = _UnetBlock(output_nc, ngf, input_nc=input_nc, sub=blk, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


class _ResBlock(nn.Module):
    def __init__(self, dim, norm, padding_type, dropout, bias):
        super().__init__()
        p = 1 if padding_type == "zero" else 0
        pad = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}.get(padding_type)
        layers = ([pad(1)] if pad else []) + [nn.Conv2d(dim, dim, 3, padding=p, bias=bias), _norm(norm, dim), nn.ReLU()]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += ([pad(1)] if pad else []) + [nn.Conv2d(dim, dim, 3, padding=p, bias=bias), _norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class _OfficialResnet(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_blocks, norm="instance", dropout=False, padding_type="reflect"):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU()]
        for i in range(2):
            layers += [nn.Conv2d(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, 1, bias=bias), _norm(norm, ngf * 2 ** (i + 1)), nn.ReLU()]
        layers += [_ResBlock(ngf * 4, norm, padding_type, dropout, bias) for _ in range(n_blocks)]
        for i in range(2):
            cin, cout = ngf * 2 ** (2 - i), ngf * 2 ** (1 - i)
            layers += [nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=bias), _norm(norm, cout), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def _randomize(net: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif t.dim() == 4:
                fan_in = t.shape[1] * t.shape[2] * t.shape[3] if "Transpose" not in name else t.shape[0]
                t.copy_(torch.randn(t.shape, generator=g) * 1.4 / fan_in**0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return net.state_dict()


def _load(sd: dict) -> nn.Module:
    cfg = infer_config(sd)
    model = build_model(infer_arch(sd), cfg)
    model.load_state_dict(from_junyanz(sd, cfg), strict=True)
    return model


@pytest.mark.parametrize(
    "num_downs,norm,size", [(5, "batch", 32), (7, "instance", 128), (6, "batch", 64)]
)
def test_unet_matches_official_layout_replica(num_downs: int, norm: str, size: int) -> None:
    official = _OfficialUnet(3, 2, num_downs, 2, norm=norm)
    sd = _randomize(official)
    model = _load(sd)
    assert infer_config(sd) == dict(input_nc=3, output_nc=2, num_downs=num_downs, ngf=2, norm=norm, use_dropout=True)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        for mode in ("eval", "train"):
            getattr(official, mode)(), getattr(model, mode)()
            torch.manual_seed(5)
            ref = official(x)
            torch.manual_seed(5)
            out = model(x)
            assert_close(out, ref, NETWORK, msg=f"mode {mode}")


@pytest.mark.parametrize(
    "norm,dropout,padding",
    [("instance", False, "reflect"), ("batch", True, "reflect"), ("instance", True, "zero"), ("batch", False, "zero")],
)
def test_resnet_matches_official_layout_replica(norm: str, dropout: bool, padding: str) -> None:
    official = _OfficialResnet(3, 3, 4, 2, norm=norm, dropout=dropout, padding_type=padding)
    sd = _randomize(official)
    cfg = infer_config(sd)
    assert cfg == dict(input_nc=3, output_nc=3, ngf=4, n_blocks=2, norm=norm, use_dropout=dropout, padding_type=padding)
    model = _load(sd)
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        official.eval(), model.eval()
        assert_close(model(x), official(x), NETWORK)  # a whole network, another op order


def test_replicate_padding_is_a_config_override() -> None:
    official = _OfficialResnet(3, 3, 4, 1, padding_type="replicate")
    sd = _randomize(official)
    cfg = {**infer_config(sd), "padding_type": "replicate"}  # not visible in the keys
    model = build_model("cyclegan_resnet", cfg)
    model.load_state_dict(from_junyanz_resnet(sd, cfg), strict=True)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert_close(model(x), official(x), NETWORK)  # a whole network, another op order


def test_legacy_instance_norm_buffers_are_dropped() -> None:
    sd = dict(_randomize(_OfficialResnet(3, 3, 4, 1)))
    # PyTorch < 0.4 stored running stats for InstanceNorm layers; the official loader deletes them
    for prefix in ("model.2", "model.10.conv_block.2", "model.12"):
        c = 4 if prefix == "model.2" else 16 if "conv_block" in prefix else 8
        sd[f"{prefix}.running_mean"] = torch.zeros(c)
        sd[f"{prefix}.running_var"] = torch.ones(c)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
    model = _load(sd)
    assert not any("running" in k for k in model.state_dict())

    unet = dict(_randomize(_OfficialUnet(3, 3, 5, 2, norm="instance")))
    unet["model.model.1.model.2.running_mean"] = torch.zeros(4)
    _load(unet)


def test_wrong_checkpoints_raise_weights_error() -> None:
    sd = dict(_randomize(_OfficialResnet(3, 3, 4, 1)))
    cfg = infer_config(sd)
    with pytest.raises(WeightsError, match="unexpected 1 key"):
        from_junyanz_resnet({**sd, "model.99.weight": torch.zeros(1)}, cfg)
    with pytest.raises(WeightsError, match="missing"):
        from_junyanz_resnet({k: v for k, v in sd.items() if k != "model.4.bias"}, cfg)
    with pytest.raises(WeightsError, match="missing"):
        from_junyanz_resnet(sd, {**cfg, "n_blocks": 2})
    with pytest.raises(WeightsError, match="shape"):
        from_junyanz_resnet({**sd, "model.4.bias": torch.zeros(3)}, cfg)
    with pytest.raises(WeightsError, match="not tensors"):
        from_junyanz_unet({"model.model.0.weight": [1, 2]}, {})
    with pytest.raises(WeightsError, match="latest_net_G"):
        infer_arch({"netG.weight": torch.zeros(1)})
    # running stats on a *batch*-norm-free layer of a BatchNorm net are not legacy leftovers
    unet = dict(_randomize(_OfficialUnet(3, 3, 5, 2)))
    with pytest.raises(WeightsError, match="unexpected"):
        from_junyanz_unet({**unet, "model.model.0.running_mean": torch.zeros(2)}, infer_config(unet))


@pytest.mark.parametrize(
    "name,arch,expected",
    [
        ("pix2pix_unet256_facades", "pix2pix_unet", dict(num_downs=8, ngf=64, norm="batch")),
        ("cyclegan_resnet9_horse2zebra", "cyclegan_resnet", dict(n_blocks=9, ngf=64, norm="instance")),
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
    out = from_junyanz(sd, cfg)
    assert len(out) == len(sd)


def test_use_dropout_is_a_parameter() -> None:
    """A U-Net's weights do not record --no_dropout (a parameter); a ResNet's do (a contradiction raises)."""
    unet = _randomize(_OfficialUnet(3, 2, 5, 2, norm="batch"))
    assert infer_config(unet)["use_dropout"] is True
    assert infer_config(unet, use_dropout=False)["use_dropout"] is False
    resnet = _randomize(_OfficialResnet(3, 3, 4, 2, norm="instance", dropout=False, padding_type="reflect"))
    assert infer_config(resnet, use_dropout=False)["use_dropout"] is False
    with pytest.raises(WeightsError, match="without Dropout"):
        infer_config(resnet, use_dropout=True)
