"""DCGAN generator/discriminator: pytorch/examples layout, resolutions, BatchNorm modes."""

from __future__ import annotations

import pytest
import torch

from imgsynth.models import build_model
from imgsynth.models.dcgan import DCGANDiscriminator, DCGANGenerator, split_resolution

from tolerance import assert_close

# pytorch/examples dcgan/main.py netG keys (conformance manifest dcgan_examples).
EXAMPLES_KEYS = {
    "main.0.weight": (100, 512, 4, 4),
    "main.3.weight": (512, 256, 4, 4),
    "main.6.weight": (256, 128, 4, 4),
    "main.9.weight": (128, 64, 4, 4),
    "main.12.weight": (64, 3, 4, 4),
}


def test_default_is_pytorch_examples_layout() -> None:
    with torch.device("meta"):
        sd = DCGANGenerator().state_dict()
    assert len(sd) == 5 + 4 * 5  # 5 ConvT + 4 BN x (weight, bias, mean, var, count)
    for key, shape in EXAMPLES_KEYS.items():
        assert tuple(sd[key].shape) == shape
    assert "main.10.num_batches_tracked" in sd


@pytest.mark.parametrize("res,base,k", [(64, 4, 4), (32, 4, 3), (28, 7, 2), (8, 4, 1)])
def test_resolutions(res: int, base: int, k: int) -> None:
    assert split_resolution(res) == (base, k)
    G = build_model("dcgan", {"z_dim": 6, "ngf": 4, "img_channels": 1, "img_resolution": res}).eval()
    D = DCGANDiscriminator(ndf=4, img_channels=1, img_resolution=res)
    z = torch.randn(2, 6)
    img = G(z)
    assert img.shape == (2, 1, res, res) and img.abs().max() <= 1.0
    assert D(img).shape == (2, 1)
    assert (G.z_dim, G.c_dim, G.img_channels, G.img_resolution) == (6, 0, 1, res)


@pytest.mark.parametrize("res", [28, 64])
@pytest.mark.parametrize("train", [False, True])
def test_fast_path_equals_plain_sequential(res: int, train: bool) -> None:
    """The CPU forward (GEMM + fold / channels-last ConvT) computes what the Sequential does."""
    G = build_model("dcgan", {"z_dim": 10, "ngf": 8, "img_channels": 3, "img_resolution": res})
    G.train(train)
    z = torch.randn(3, 10)
    with torch.no_grad():
        assert_close(G(z), G.main(z.view(3, 10, 1, 1)), rtol=1e-5, atol=1e-5)


def test_inference_cache_follows_weight_updates() -> None:
    G = build_model("dcgan", {"z_dim": 10, "ngf": 8, "img_resolution": 32}).eval()
    z = torch.randn(2, 10)
    with torch.no_grad():
        G(z)
        assert "_gemm_cache" in G.main[3].__dict__
        G.main[3].weight.mul_(-1.5)  # in-place update under no_grad bumps the version counter
        assert_close(G(z), G.main(z.view(2, 10, 1, 1)), rtol=1e-5, atol=1e-5)
    G.train()
    assert "_gemm_cache" not in G.main[3].__dict__


@pytest.mark.parametrize("res", [2, 4, 9, 24 * 5])
def test_rejects_unsupported_resolution(res: int) -> None:
    with pytest.raises(ValueError):
        DCGANGenerator(img_resolution=res)


def test_latent_shapes_and_batchnorm_modes() -> None:
    G = build_model("dcgan", {"z_dim": 8, "ngf": 4, "img_resolution": 32})
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    z = torch.randn(4, 8)
    G.eval()
    with torch.no_grad():
        flat, spatial = G(z), G(z.view(4, 8, 1, 1))
        alone = G(z[:1])
    assert_close(flat, spatial)
    assert_close(alone, flat[:1], rtol=1e-5, atol=1e-5)  # eval: per-sample
    G.train()
    with torch.no_grad():
        batch_stats = G(z)
    # train mode (what the official samplers run): BatchNorm uses this batch's statistics.
    assert not torch.allclose(batch_stats, flat, atol=1e-3)


def test_dummy_inputs_backward_and_bfloat16() -> None:
    G = build_model("dcgan", {"z_dim": 8, "ngf": 4, "img_channels": 1, "img_resolution": 32})
    D = DCGANDiscriminator(ndf=4, img_channels=1, img_resolution=32)
    (z,) = G.dummy_inputs(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 8)
    D(G(z)).mean().backward()
    assert all(p.grad is not None for p in G.parameters())
    G16 = G.to(torch.bfloat16).eval()
    with torch.no_grad():
        out = G16(z.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_no_output_activation_option() -> None:
    G = build_model("dcgan", {"z_dim": 4, "ngf": 2, "img_resolution": 8, "output_activation": "none"})
    assert not any(isinstance(m, torch.nn.Tanh) for m in G.modules())
    with pytest.raises(ValueError):
        DCGANGenerator(output_activation="sigmoid")
