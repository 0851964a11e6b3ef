"""Adaptive discriminator augmentation: the pipeline, the p controller, and ADA inside training runs."""

from __future__ import annotations

import math

import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.training.augment import PIPES, AdaptiveP, AugmentPipe
from imgsynth.training.loop import train


def images(n=4, c=3, size=8, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def geom(*mats):
    """Params with the given 3x3 geometric matrices and identity colour."""
    g = torch.stack([torch.tensor(m, dtype=torch.float64) for m in mats])
    return {"geom": g, "color": torch.eye(4, dtype=torch.float64).expand(len(mats), 4, 4).clone()}


def test_p_zero_is_the_identity_and_draws_nothing():
    x = images()
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    assert AugmentPipe("bgc", 0.0)(x, gen) is x
    assert torch.equal(gen.get_state(), before)


def test_identity_parameters_keep_the_image():
    x = images(c=1)
    out = AugmentPipe("bgc", 1.0).apply(x, geom(*[[[1, 0, 0], [0, 1, 0], [0, 0, 1]]] * 4))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_blit_transforms_are_exact_pixel_moves():
    x = images(n=3, c=3, size=8)
    flip = [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]
    rot90 = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # output (u, v) samples input (-v, u)
    shift = [[1, 0, 2 * 2 / 8], [0, 1, 0], [0, 0, 1]]  # output x samples input x + 2 pixels
    out = AugmentPipe("blit", 1.0).apply(x, geom(flip, rot90, shift))
    torch.testing.assert_close(out[0], torch.flip(x[0], [2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], 1, [1, 2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2][:, :, :6], x[2][:, :, 2:], atol=1e-5, rtol=0)


def test_gradients_flow_through_every_transformation():
    torch.manual_seed(0)
    x = images(n=16, c=3, size=16).requires_grad_(True)
    pipe = AugmentPipe("bgc", 1.0)
    out = pipe(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.allclose(out, x)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()  # every image passes gradient back
    # and for a condition + image stack: colour acts only on the last channels
    cond = torch.zeros(2, 2, 8, 8)
    stacked = torch.cat([cond, images(n=2, c=3)], 1)
    out = AugmentPipe("color", 1.0)(stacked, torch.Generator().manual_seed(2), color_channels=3)
    assert torch.equal(out[:, :2], cond) and not torch.allclose(out[:, 2:], stacked[:, 2:])


def test_each_transformation_fires_with_probability_p():
    pipe = AugmentPipe("bgc", 0.3)
    params = pipe.draw(4000, 16, torch.Generator().manual_seed(0))
    eye3, eye4 = torch.eye(3, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    changed_g = ~torch.isclose(params["geom"], eye3).flatten(1).all(1)
    changed_c = ~torch.isclose(params["color"], eye4).flatten(1).all(1)
    # geometric: xflip (p/2 effective), rot90 (3p/4), xint, scale, rotate (p), aniso -> P(no change)
    p = 0.3
    p_none_g = (1 - p / 2) * (1 - 3 * p / 4) * (1 - p) ** 4  # xint rounds to 0 sometimes: bound below
    assert abs(float(changed_g.double().mean()) - (1 - p_none_g)) < 0.06
    p_none_c = (1 - p) ** 4 * (1 - p / 2)  # brightness, contrast, hue, saturation; lumaflip p/2
    assert abs(float(changed_c.double().mean()) - (1 - p_none_c)) < 0.04
    assert set(PIPES["bgc"]) == {"xflip", "rotate90", "xint", "scale", "rotate", "aniso",
                                 "brightness", "contrast", "lumaflip", "hue", "saturation"}


def test_p_moves_towards_the_target():
    ada = AdaptiveP(target=0.6, interval=2, kimg=1.0)
    step = 32 * 2 / 1000
    ada.observe(torch.full((32,), 3.0))  # D sure every real is real: overfitting -> more augmentation
    assert not ada.update(32)
    assert ada.update(32) and ada.last_rt == 1.0 and math.isclose(ada.p, step)
    for _ in range(2):
        ada.observe([torch.full((32, 1, 4, 4), -1.0), torch.full((32, 1, 2, 2), -1.0)])  # two heads
        ada.update(32)
    assert ada.last_rt == -1.0 and ada.p == 0.0  # moved down, clamped at 0
    ada.p = 0.999
    ada.observe(torch.ones(4))
    ada.update(32), ada.update(32)
    assert ada.p == 1.0
    lsgan = AdaptiveP(centre=0.5, interval=1, kimg=1.0)
    lsgan.observe(torch.full((8,), 0.4))  # below LSGAN's 0.5: judged fake
    lsgan.update(8)
    assert lsgan.last_rt == -1.0


def test_runs_adapt_p_and_resume_exactly(tmp_path, tiny, final_state, compare_runs):
    def cfg(out, steps):
        return tiny(tmp_path, out, run={"steps": steps}, loss={"feature_matching": 1.0},
                    augment={"ada": "on", "interval": 1, "kimg": 0.05, "p": 0.2})

    full = train(cfg("full", 6))
    assert {"ada_p", "ada_rt"} <= set(full.history[-1])
    a = final_state(tmp_path / "full")
    assert a["augment"]["p"] != 0.2 and a["augment"]["steps"] == 6
    train(cfg("split", 3))
    train(cfg("split", 6), resume=True)
    b = final_state(tmp_path / "split")
    compare_runs(a, b, history=False)
    assert a["augment"] == b["augment"]


def test_off_by_default_auto_for_stylegan2_and_refused_without_a_discriminator(tmp_path, tiny):
    assert "ada_p" not in train(tiny(tmp_path, "plain", run={"steps": 1})).history[-1]
    fixed = train(tiny(tmp_path, "fixed", run={"steps": 2, "log_every": 1}, augment={"ada": "off", "p": 0.5}))
    assert [h["ada_p"] for h in fixed.history] == [0.5, 0.5] and "ada_rt" not in fixed.history[-1]
    sg2 = tiny(tmp_path, "sg2", run={"steps": 1}, data={"resolution": 16, "load_size": 0},
               model={"family": "stylegan2", "options": {"pl_every": 0},
                      "generator": {"z_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 32,
                                    "channel_max": 8},
                      "discriminator": {"channel_base": 32, "channel_max": 8}})
    assert "ada_p" in train(sg2).history[-1]
    from imgsynth.training.config import from_dict

    with pytest.raises(ConfigError, match="augment.p must be a probability"):
        from_dict({"augment": {"p": 1.5}})
    with pytest.raises(ConfigError, match="augment.ada must be"):
        from_dict({"augment": {"ada": True}})
