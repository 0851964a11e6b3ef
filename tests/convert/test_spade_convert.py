"""Official SPADE checkpoint conversion: spectral-norm fold, key mapping, config inference, strictness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imgsynth.convert.spade import convert_keys, fold_spectral_norm, from_official, infer_config
from imgsynth.errors import ConfigError, WeightsError
from imgsynth.models import build_model

from tolerance import assert_close

TINY = dict(label_nc=5, contain_dontcare=True, use_instance=False, ngf=2, crop_size=64, nhidden=8)
SN_CONV = ("conv_0", "conv_1", "conv_s")
MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "data"


def _official(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """An official-format netG state dict for ``config`` with random values.

    Written from the official layout (spectral-norm ``weight_orig/_u/_v`` on the residual-block
    convs, separate ``mlp_gamma``/``mlp_beta``), not by inverting the converter.
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, t in build_model("spade", config).state_dict().items():
        parts = key.split(".")
        if not t.is_floating_point():
            out[key] = t.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(t.shape, generator=g) + 0.5
        elif len(parts) == 3 and parts[1] in SN_CONV and parts[2] == "weight":
            base = key[: -len("weight")]
            out[base + "weight_orig"] = torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5
            out[base + "weight_u"] = torch.nn.functional.normalize(torch.randn(t.shape[0], generator=g), dim=0)
            out[base + "weight_v"] = torch.nn.functional.normalize(torch.randn(t[0].numel(), generator=g), dim=0)
        elif "mlp_gamma_beta" in key:
            half = t.shape[0] // 2
            val = torch.randn(t.shape, generator=g) * 0.1
            out[key.replace("mlp_gamma_beta", "mlp_gamma")] = val[:half]
            out[key.replace("mlp_gamma_beta", "mlp_beta")] = val[half:]
        else:
            out[key] = torch.randn(t.shape, generator=g) * 0.1
    return out


def test_fold_matches_manual_sigma_and_torch_spectral_norm() -> None:
    g = torch.Generator().manual_seed(0)
    w, u, v = torch.randn(6, 4, 3, 3, generator=g), torch.randn(6, generator=g), torch.randn(36, generator=g)
    sigma = sum(u[i] * sum(w[i].flatten()[j] * v[j] for j in range(36)) for i in range(6))
    assert_close(fold_spectral_norm(w, u, v), w / sigma, rtol=1e-5, atol=1e-6)
    # the official mechanism: torch.nn.utils.spectral_norm in eval mode with stored u, v
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 6, 3))
    conv.weight_orig.data.copy_(w)
    conv.weight_u.copy_(u)
    conv.weight_v.copy_(v)
    conv.eval()
    x = torch.randn(1, 4, 5, 5, generator=g)
    with torch.no_grad():
        want = conv(x)
    folded = convert_keys(conv.state_dict())
    assert set(folded) == {"weight", "bias"}
    got = torch.nn.functional.conv2d(x, folded["weight"], folded["bias"])
    assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gamma_beta_concatenated_gamma_first() -> None:
    sd = {"mlp_gamma.weight": torch.ones(2, 3), "mlp_beta.weight": torch.zeros(2, 3)}
    out = convert_keys(sd)
    assert list(out) == ["mlp_gamma_beta.weight"] and out["mlp_gamma_beta.weight"][:2].eq(1).all()
    with pytest.raises(WeightsError, match="mlp_beta"):
        convert_keys({"mlp_gamma.weight": torch.ones(2, 3)})
    with pytest.raises(WeightsError, match="weight_u"):
        convert_keys({"conv.weight_orig": torch.ones(2, 3)})


def test_infer_config_reads_shapes_and_hints() -> None:
    sd = _official({**TINY, "num_upsampling_layers": "most", "crop_size": 128})
    cfg = infer_config(sd, label_nc=5, contain_dontcare=True, crop_size=128)
    assert cfg["ngf"] == 2 and cfg["nhidden"] == 8 and cfg["kernel_size"] == 3
    assert cfg["num_upsampling_layers"] == "most" and cfg["norm"] == "batch" and not cfg["use_vae"]
    assert (cfg["label_nc"], cfg["contain_dontcare"], cfg["use_instance"]) == (5, True, False)
    plain = infer_config(sd)  # no hints: every channel is a label
    assert (plain["label_nc"], plain["contain_dontcare"], plain["use_instance"]) == (6, False, False)
    with pytest.raises(WeightsError, match="6 label channels"):
        infer_config(sd, label_nc=5, contain_dontcare=True, use_instance=True)
    with pytest.raises(WeightsError, match="up_4"):
        infer_config(sd, num_upsampling_layers="more")
    with pytest.raises(ConfigError, match="unknown SPADE hint"):
        infer_config(sd, ngf=3)
    with pytest.raises(ConfigError, match="unknown SPADE dataset"):
        infer_config(sd, dataset="mars")
    inst = _official({**TINY, "norm": "instance"})
    assert infer_config(inst)["norm"] == "instance"
    with pytest.raises(WeightsError, match="not an official SPADE"):
        infer_config({"foo": torch.zeros(1)})


def test_folded_equals_spectral_norm_parametrization() -> None:
    sd = _official(TINY)
    cfg = infer_config(sd, label_nc=5, contain_dontcare=True, crop_size=64)
    folded = build_model("spade", cfg).eval()
    folded.load_state_dict(from_official(sd, cfg), strict=True)
    cfg_sn = {**cfg, "spectral_norm": True}
    param = build_model("spade", cfg_sn).eval()
    param.load_state_dict(from_official(sd, cfg_sn), strict=True)
    (x,) = folded.dummy_inputs(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = folded(x), param(x)
    assert a.std() > 0.01
    assert_close(a, b, rtol=1e-4, atol=1e-5)
    w = sd["up_0.conv_s.weight_orig"]
    assert_close(
        folded.up_0.conv_s.weight,
        w / (sd["up_0.conv_s.weight_u"] @ w.reshape(w.shape[0], -1) @ sd["up_0.conv_s.weight_v"]),
    )


def test_from_official_is_strict() -> None:
    sd = _official(TINY)
    cfg = infer_config(sd, label_nc=5, contain_dontcare=True, crop_size=64)
    missing = {k: v for k, v in sd.items() if not k.startswith("up_2.norm_1.param_free_norm.running_mean")}
    with pytest.raises(WeightsError, match="missing 1 key") as err:
        from_official(missing, cfg)
    assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match="unexpected 1 key"):
        from_official({**sd, "up_9.conv_0.bias": torch.zeros(1)}, cfg)
    with pytest.raises(WeightsError, match="mis-shaped"):
        from_official(sd, {**cfg, "nhidden": 4})
    with pytest.raises(WeightsError, match="missing"):
        from_official(sd, {**cfg, "num_upsampling_layers": "most", "crop_size": 128})
    with pytest.raises(ConfigError, match="latent grid"):
        from_official(sd, {**cfg, "crop_size": 16})


def test_vae_checkpoint_pair() -> None:
    cfg = {**TINY, "use_vae": True, "z_dim": 16}
    g = _official(cfg)
    e = {k[len("encoder."):]: v for k, v in g.items() if k.startswith("encoder.")}
    g = {k: v for k, v in g.items() if not k.startswith("encoder.")}
    # the official encoder convs are spectral-normed too
    for i in range(1, 7):
        w = e.pop(f"layer{i}.0.weight")
        e[f"layer{i}.0.weight_orig"] = w
        e[f"layer{i}.0.weight_u"] = torch.ones(w.shape[0]) / w.shape[0] ** 0.5
        e[f"layer{i}.0.weight_v"] = torch.ones(w[0].numel()) / w[0].numel() ** 0.5
    inferred = infer_config({"netG": g, "netE": e}, label_nc=5, contain_dontcare=True, crop_size=64)
    assert inferred["use_vae"] and inferred["z_dim"] == 16
    model = build_model("spade", inferred)
    model.load_state_dict(from_official({"netG": g, "netE": e}, inferred), strict=True)
    with pytest.raises(WeightsError, match="netE"):
        from_official(g, inferred)
    with pytest.raises(WeightsError, match="latent grid"):
        infer_config(g, label_nc=5, contain_dontcare=True, crop_size=128)


@pytest.mark.parametrize("name", ["spade_ade20k", "spade_cityscapes"])
def test_released_key_layout(name: str) -> None:
    """The full released configs' official key/shape lists convert into our full-size model."""
    path = MANIFESTS / f"{name}.manifest.json"
    if not path.exists():
        pytest.skip("conformance manifests not available")
    full = json.loads(path.read_text())["full"]
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    sd = {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in full["state_dict"].items()}
    cfg = infer_config(sd, dataset=name.split("_")[1])
    assert cfg["ngf"] == 64 and cfg["label_nc"] == full["options"]["label_nc"]
    converted = from_official(sd, cfg)
    with torch.device("meta"):
        model = build_model("spade", cfg)
    assert model.output_size(0, 0) == tuple(full["output_hw"])
    model.load_state_dict(converted, strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == full["params"]
