"""The VGG-19 perceptual loss of pix2pixHD and SPADE: the feature net and the loss (the families' term: families/test_vgg.py)."""

from __future__ import annotations

import pytest
import torch

from imgsynth.errors import ConfigError, WeightsError
from imgsynth.training.losses import (
    VGG19_LAYER_WEIGHTS,
    VGG16Features,
    VGG19Features,
    vgg_feature_loss,
)


def test_layout_is_torchvision_vgg19():
    """Every parameter has torchvision's name and shape, and the taps are its relu1_1 .. relu5_1."""
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.vgg19()
    ref = tv.state_dict()
    for k, v in VGG19Features().state_dict().items():
        assert tuple(ref[k].shape) == tuple(v.shape), k
    for i in (1, 6, 11, 20, 29):  # relu1_1 .. relu5_1: the ReLU after the first conv of each block
        assert isinstance(tv.features[i], torch.nn.ReLU) and isinstance(tv.features[i - 1], torch.nn.Conv2d)
        assert i == 1 or isinstance(tv.features[i - 2], torch.nn.MaxPool2d)
    assert len(VGG19Features()(torch.zeros(1, 3, 16, 16))) == 5


def test_loss_is_the_weighted_l1_of_features_and_trains_only_the_fake(vgg_file):
    vgg = VGG19Features.from_file(vgg_file)
    assert not any(p.requires_grad for p in vgg.parameters())
    g = torch.Generator().manual_seed(1)
    real = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    fake = (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1).requires_grad_(True)
    assert float(vgg_feature_loss(vgg, real.clone(), real)) == 0.0
    loss = vgg_feature_loss(vgg, fake, real)
    with torch.no_grad():
        want = sum(w * (a - b).abs().mean() for w, a, b in zip(VGG19_LAYER_WEIGHTS, vgg(fake), vgg(real)))
    assert float(loss.detach()) > 0 and torch.allclose(loss.detach(), want)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    gray = vgg_feature_loss(vgg, fake[:, :1], real[:, :1])  # one channel is repeated to three
    assert float(gray.detach()) > 0
    with pytest.raises(ConfigError, match="RGB or grayscale"):
        vgg_feature_loss(vgg, torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16))


def test_loader_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(WeightsError, match="VGG-19 weights .* do not exist"):
        VGG19Features.from_file(tmp_path / "none.pth")
    vgg16 = tmp_path / "vgg16.pth"
    torch.save(VGG16Features().state_dict(), vgg16)
    with pytest.raises(WeightsError, match=r"not a torchvision VGG-19 state dict \(missing features.16.weight"):
        VGG19Features.from_file(vgg16)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read VGG-19 weights"):
        VGG19Features.from_file(junk)
