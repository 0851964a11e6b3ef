"""Progressive GAN generator/discriminator: official forward semantics, growing, fade-in."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imgsynth.models import build_model
from imgsynth.models.progan import ProGANDiscriminator, ProGANGenerator

from tolerance import assert_close


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else 1.0))


def _reference(G: ProGANGenerator, z: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """The GAN-zoo GNet forward, written out op by op from the conformance README."""

    def pn(x):
        return x * ((x**2).mean(dim=1, keepdim=True) + 1e-8).rsqrt()

    def eq(layer, x):
        m = layer.module
        c = math.sqrt(2.0 / m.weight[0].numel())
        if isinstance(m, torch.nn.Linear):
            return F.linear(x, m.weight, m.bias) * c
        return F.conv2d(x, m.weight, m.bias, padding=m.padding) * c

    def up(x):
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    lrelu = torch.nn.LeakyReLU(0.2)
    x = pn(z)
    x = pn(lrelu(eq(G.formatLayer, x)).view(z.shape[0], -1, 4, 4))
    x = pn(lrelu(eq(G.groupScale0[0], x)))
    n = len(G.scaleLayers)
    y = up(eq(G.toRGBLayers[-2], x)) if alpha > 0 and n == 1 else None
    for s, (a, b) in enumerate(G.scaleLayers):
        x = pn(lrelu(eq(a, up(x))))
        x = pn(lrelu(eq(b, x)))
        if alpha > 0 and s == n - 2:
            y = up(eq(G.toRGBLayers[-2], x))
    x = eq(G.toRGBLayers[-1], x)
    return alpha * y + (1 - alpha) * x if alpha > 0 else x


def _tiny(**kw) -> ProGANGenerator:
    G = build_model("progan", {"z_dim": 8, "channels": [8, 8, 6, 4], **kw})
    _randomize(G)
    return G.eval()


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_matches_ganzoo_semantics(alpha: float) -> None:
    G = _tiny()
    z = torch.randn(3, 8)
    with torch.no_grad():
        out = G(z, alpha=alpha)
    assert out.shape == (3, 3, 32, 32)
    assert_close(out, _reference(G, z, alpha), rtol=1e-4, atol=1e-4)
    with torch.enable_grad():  # uncached weight path gives the same numbers
        assert_close(G(z, alpha=alpha).detach(), out, rtol=1e-5, atol=1e-5)


def test_interface_and_key_layout() -> None:
    G = _tiny()
    assert (G.z_dim, G.c_dim, G.img_channels, G.img_resolution) == (8, 0, 3, 32)
    keys = list(G.state_dict())
    assert keys[0] == "scaleLayers.0.0.module.weight" and "formatLayer.module.weight" in keys
    assert "toRGBLayers.3.module.bias" in keys and "groupScale0.0.module.bias" in keys
    (z,) = G.dummy_inputs(2, torch.Generator().manual_seed(0))
    assert z.shape == (2, 8)
    assert G(z.view(2, 8, 1, 1)).shape == (2, 3, 32, 32)
    assert _tiny(output_activation="tanh")(z).abs().max() <= 1.0


def test_grow_4_to_32_and_fade_in() -> None:
    G = build_model("progan", {"z_dim": 8, "channels": [8]})
    _randomize(G)
    G.eval()
    z = torch.randn(2, 8)
    for depth, res in [(8, 8), (6, 16), (4, 32)]:
        with torch.no_grad():
            before = G(z)
        G.grow(depth)
        assert G.img_resolution == res
        with torch.no_grad():
            # New weights start at N(0, 1) and zero bias: fully faded out, the grown net shows the
            # previous output upsampled; alpha=0 is the plain grown net.
            assert_close(G(z, alpha=1.0), F.interpolate(before, scale_factor=2.0))
            plain = G(z)
            assert_close(G(z, alpha=0.0), plain)
        assert plain.shape == (2, 3, res, res)
    assert G.channels == [8, 8, 6, 4]
    # The recorded channels rebuild the grown net with the same keys and shapes.
    rebuilt = build_model("progan", {"z_dim": 8, "channels": G.channels})
    rebuilt.load_state_dict(G.state_dict(), strict=True)
    with pytest.raises(ValueError):
        G(z, alpha=1.5)


def test_discriminator_shapes_grow_and_fade_in() -> None:
    D = ProGANDiscriminator(channels=[8], img_channels=3)
    _randomize(D)
    D.eval()
    img = torch.rand(4, 3, 4, 4) * 2 - 1
    assert D(img).shape == (4, 1)
    for depth, res in [(8, 8), (6, 16), (4, 32)]:
        img = torch.rand(4, 3, res, res) * 2 - 1
        with torch.no_grad():
            pooled = D(F.avg_pool2d(img, 2))
        D.grow(depth)
        assert D.img_resolution == res
        with torch.no_grad():
            assert_close(D(img, alpha=1.0), pooled, rtol=1e-5, atol=1e-5)
            assert D(img).shape == (4, 1)
    assert "fromRGBLayers.3.module.weight" in D.state_dict()
    assert D.groupScaleZero[0].module.weight.shape[1] == 8 + 1  # minibatch-stddev channel
    with pytest.raises(ValueError):
        D(torch.zeros(1, 3, 16, 16))


def test_training_step_and_fresh_weights_after_update() -> None:
    G = _tiny()
    D = ProGANDiscriminator(channels=[8, 8, 6, 4])
    z = torch.randn(4, 8)
    G.eval()
    with torch.no_grad():
        before = G(z)
    G.train()
    opt = torch.optim.SGD(G.parameters(), lr=0.1)
    loss = -D(G(z, alpha=0.5), alpha=0.5).mean()
    loss.backward()
    used = [n for n, p in G.named_parameters() if p.grad is not None]
    # Everything but the toRGB layers of the older scales takes part in a fade-in step.
    assert sorted(n for n, _ in G.named_parameters() if n not in used) == [
        f"toRGBLayers.{i}.module.{k}" for i in (0, 1) for k in ("bias", "weight")
    ]
    opt.step()
    G.eval()
    with torch.no_grad():
        after = G(z)
    assert not torch.allclose(before, after)  # no stale inference cache


def test_bfloat16() -> None:
    G = _tiny().to(torch.bfloat16)
    with torch.no_grad():
        out = G(torch.randn(2, 8, dtype=torch.bfloat16), alpha=0.5)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
