"""Fully-connected GAN (Goodfellow et al. 2014) generator and discriminator."""

from __future__ import annotations

import torch

from imgsynth.models import build_model, get_model
from imgsynth.models.gan import GANDiscriminator

from tolerance import assert_close


def test_generator_shapes_range_and_interface() -> None:
    G = build_model("gan", {"z_dim": 8, "hidden_sizes": [16, 32], "img_channels": 3, "img_resolution": 5})
    assert get_model("gan").task == "sample"
    assert (G.z_dim, G.c_dim, G.img_channels, G.img_resolution) == (8, 0, 3, 5)
    (z,) = G.dummy_inputs(4, torch.Generator().manual_seed(0))
    img = G(z)
    assert img.shape == (4, 3, 5, 5)
    assert img.abs().max() <= 1.0
    linears = [m for m in G.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [16, 32, 75]
    assert_close(G(z.view(4, 8, 1, 1)), img)


def test_discriminator_logits_dropout_and_training_step() -> None:
    G = build_model("gan", {"z_dim": 4, "hidden_sizes": [8], "img_resolution": 6})
    D = GANDiscriminator(hidden_sizes=[16, 8], img_channels=1, img_resolution=6, dropout=0.5)
    z = torch.randn(5, 4)
    logits = D(G(z))
    assert logits.shape == (5, 1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())
    D.eval()
    x = torch.randn(2, 1, 6, 6)
    assert_close(D(x), D(x))  # dropout off in eval mode
    D.train()
    torch.manual_seed(0)
    a = D(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, D(x))  # and on in train mode
