"""The ``stylegan`` (v1) training family: a run, exact resume, style mixing, R1, the export."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.models.registry import build_model
from imgsynth.training.config import from_dict
from imgsynth.training.families import get_family
from imgsynth.training.loop import train

G_TINY = {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "mapping_features": 8, "fmap_base": 32, "fmap_max": 8}


def write_fashion(root, n=24):
    root.mkdir(parents=True, exist_ok=True)
    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28) + imgs.tobytes())
    return root


def recipe(tmp_path, out="run", steps=4, options=None, generator=None, discriminator=None, loss=None):
    return from_dict({
        "run": {"out_dir": str(tmp_path / out), "steps": steps, "log_every": 2, "sample_every": 100,
                "checkpoint_every": 100, "grid_samples": 4, "keep_checkpoints": 0},
        "data": {"source": "fashion-mnist", "path": str(write_fashion(tmp_path / "fm")), "resolution": 16,
                 "batch_size": 4},
        "model": {"family": "stylegan", "generator": generator or dict(G_TINY),
                  "discriminator": discriminator or {}, "options": options or {}},
        "loss": loss or {},
        "optim": {"g_lr": 1e-3, "d_lr": 1e-3, "betas": [0.0, 0.99], "ema_decay": 0.9},
    })


def test_trains_resumes_exactly_and_exports(tmp_path, final_state, assert_same):
    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.sample import Sampler
    from imgsynth.training.export import export

    full = train(recipe(tmp_path, "full", steps=4))
    assert set(full.history[-1]) == {"step", "d", "g", "r1"}
    assert all(math.isfinite(v) for h in full.history for v in h.values())
    assert full.history[-1]["r1"] > 0
    train(recipe(tmp_path, "split", steps=2))
    train(recipe(tmp_path, "split", steps=4), resume=True)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "data", "step"):
        assert_same(a[key], b[key], key)
    for ra, rb in zip(a["rng"], b["rng"]):
        assert torch.equal(ra["torch"], rb["torch"]) and torch.equal(ra["noise"], rb["noise"])
    # the paper's discriminator: ProGAN's, with the generator's depth per scale (4, 8, 16 px)
    assert a["arch"] == "stylegan" and a["discriminator_config"]["channels"] == [8, 8, 4]
    assert a["D"]["groupScaleZero.0.module.weight"].shape[1] == 8 + 1  # + the minibatch-stddev map
    # the tracked mean w (truncation centre) moved away from its zero start
    assert a["G_ema"]["mapping.w_avg"].abs().sum() > 0

    export(tmp_path / "full", tmp_path / "export")
    loaded = load_model("sample", weights=tmp_path / "export")
    assert loaded.arch == "stylegan" and loaded.config["img_resolution"] == 16
    net = build_model("stylegan", loaded.config)
    net.load_state_dict(loaded.model.state_dict(), strict=True)
    assert_same(net.state_dict(), a["G_ema"])

    sampler = Sampler(loaded.model.eval())
    plain = sampler.from_seeds([0, 1])
    assert plain.shape == (2, 1, 16, 16) and torch.isfinite(plain).all()
    trunc = sampler.from_seeds([0, 1], truncation_psi=0.5, truncation_cutoff=4)
    mixed = sampler.from_seeds([0, 1], mix_seeds=[2, 3], mix_layers=[4, 5])
    assert not torch.equal(trunc, plain) and not torch.equal(mixed, plain)
    # psi 0 puts every seed on the mean w: one image
    centre = sampler.from_seeds([0, 1], truncation_psi=0.0)
    assert torch.equal(centre[0], centre[1])


def test_sample_command_loads_the_export(tmp_path):
    from typer.testing import CliRunner

    from imgsynth.cli.main import app
    from imgsynth.training.export import export

    train(recipe(tmp_path, steps=1))
    export(tmp_path / "run", tmp_path / "export")
    res = CliRunner().invoke(app, ["sample", "--weights", str(tmp_path / "export"), "--seeds", "0-3",
                                   "--trunc", "0.7", "--mix-seeds", "9", "--mix-layers", "3-5",
                                   "--grid", "2x2", "-o", str(tmp_path / "grid.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "grid.png").exists()


def test_style_mixing_cuts_between_two_latents():
    fam = get_family("stylegan")
    G = build_model("stylegan", dict(G_TINY, img_resolution=16)).train()  # 6 ws
    z, c = G.dummy_inputs(3, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    cutoff = int(torch.randint(1, G.num_ws, (), generator=g))
    torch.rand((), generator=g)
    z2 = torch.randn(z.shape, generator=g)
    with torch.no_grad():
        G.eval()
        w1, w2 = G.mapping(z, c), G.mapping(z2, c)
        G.train()
    before = G.mapping.w_avg.clone()
    ws = fam.mixed_ws(G, z, c, torch.Generator().manual_seed(1), {"style_mixing": 1.0})
    assert 1 <= cutoff < G.num_ws
    assert torch.allclose(ws[:, :cutoff], w1[:, :cutoff]) and torch.allclose(ws[:, cutoff:], w2[:, cutoff:])
    # the mean w follows the first latents only (official dlatent_avg)
    expected = w1[:, 0].mean(0).lerp(before, G.mapping.w_avg_beta)
    assert torch.allclose(G.mapping.w_avg, expected)
    # probability 0: no second latent, every w from z
    unmixed = fam.mixed_ws(G, z, c, torch.Generator().manual_seed(1), {"style_mixing": 0.0})
    assert torch.allclose(unmixed, w1)


def test_r1_is_the_weighted_squared_gradient_norm():
    fam = get_family("stylegan")
    fam._r1_gamma = 10.0
    D = get_family("stylegan").discriminator_class()(channels=[8, 8, 4], img_channels=1)
    image = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = fam.real({"image": image})
    assert x.requires_grad and torch.equal(x, image)
    regs = fam.d_regularizers(D(x), {"r1_gamma": 10.0})
    x2 = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x2).sum(), x2)
    assert torch.allclose(regs["r1"], 5.0 * grad.square().sum((1, 2, 3)).mean())
    assert regs["r1"].requires_grad  # it trains D
    with torch.no_grad():  # D's look at real images in G's step (feature matching) needs no R1
        assert not fam.real({"image": image}).requires_grad
    assert fam.d_regularizers(D(image), {"r1_gamma": 10.0}) == {}


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"applies R1 itself .*set loss.r1_gamma = 0"):
        train(recipe(tmp_path, loss={"r1_gamma": 1.0}))
    with pytest.raises(ConfigError, match=r"style_mixing must be a probability"):
        train(recipe(tmp_path, options={"style_mixing": 1.5}))
    with pytest.raises(ConfigError, match=r"unconditional models only"):
        train(recipe(tmp_path, generator=dict(G_TINY, c_dim=3)))
    with pytest.raises(ConfigError, match=r"discriminator.channels has 2 scales, but data.resolution 16 needs 3"):
        train(recipe(tmp_path, discriminator={"channels": [8, 8]}))
