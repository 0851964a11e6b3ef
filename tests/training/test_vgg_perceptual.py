"""The VGG-19 perceptual loss of pix2pixHD and SPADE: the feature net, the loss, and the translation families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError, WeightsError
from imgsynth.training.config import from_dict
from imgsynth.training.families import get_family
from imgsynth.training.loop import train
from imgsynth.training.losses import (
    VGG19_LAYER_WEIGHTS,
    VGG16Features,
    VGG19Features,
    vgg_feature_loss,
)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG-19 in torchvision's layout (fp16 to keep it small), with a
    classifier key and a layer past relu5_1 that the loader must ignore."""
    torch.manual_seed(0)
    state = {k: v.half() for k, v in VGG19Features().state_dict().items()}
    state["features.30.weight"] = torch.zeros(512, 512, 3, 3, dtype=torch.half)
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


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


# --- the translation families --------------------------------------------------------------------


def write_label_pairs(root, n=2, size=20, classes=3):
    rng = np.random.default_rng(0)
    for sub in ("A", "B"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.repeat(np.repeat(rng.integers(0, classes, (size // 4, size // 4), dtype=np.uint8), 4, 0), 4, 1)
        Image.fromarray(label, "L").save(root / "A" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB").save(root / "B" / f"{i}.png")
    return root


FAMILIES = {
    "pix2pixhd": ({"ngf": 2, "n_downsample_global": 1, "n_blocks_global": 1}, {"ndf": 2, "n_layers": 1, "num_D": 1}),
    "spade": ({"ngf": 1, "nhidden": 4, "contain_dontcare": False}, {"ndf": 2, "n_layers": 1, "num_D": 1}),
    "pix2pix": ({"num_downs": 4, "ngf": 2}, {"ndf": 2, "n_layers": 1}),
}


def recipe(tmp_path, family, out="run", **options):
    size = 32 if family == "spade" else 16  # SPADE's smallest latent grid is 1x1 at 32 pixels
    root = write_label_pairs(tmp_path / "data", size=size)
    data = {"source": "paired", "path": str(root / "A"), "path_b": str(root / "B"), "resolution": size,
            "load_size": size, "batch_size": 2}
    if family != "pix2pix":
        data["label_nc"] = 3
    generator, discriminator = FAMILIES[family]
    return from_dict({
        "run": {"out_dir": str(tmp_path / out), "steps": 1, "grid_samples": 1, "sample_every": 100,
                "checkpoint_every": 100, "keep_checkpoints": 0},
        "data": data,
        "model": {"family": family, "generator": generator, "discriminator": discriminator, "options": options},
        "loss": {"gan": "hinge"},
    })


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_adds_the_term_with_gradients(tmp_path, vgg_file, family):
    """With a VGG-19 file the family's G losses hold lambda * L_VGG, and it reaches G's output."""
    from imgsynth.training.data import build_dataset

    cfg = recipe(tmp_path, family, vgg_weights=str(vgg_file), vgg=2.5)
    fam = get_family(family)
    assert fam.options(cfg) == {"vgg_weights": str(vgg_file), "vgg": 2.5}
    dataset = build_dataset(cfg.data, seed=0)
    fam.generator_config(cfg, dataset)
    batch = {k: torch.stack([dataset[(i, 0)][k] for i in range(2)]) for k in dataset[(0, 0)]}
    fake = (batch["b"] * 0.5).requires_grad_(True)
    terms = fam.extra_g_losses(cfg, batch, fake)
    assert set(terms) == {"vgg"}
    expected = 2.5 * vgg_feature_loss(VGG19Features.from_file(vgg_file), fake.detach(), batch["b"])
    assert torch.allclose(terms["vgg"].detach(), expected) and float(expected) > 0
    terms["vgg"].backward()
    assert fake.grad.abs().sum() > 0


def test_runs_log_the_term_and_export_without_the_vgg_file(tmp_path, vgg_file):
    """The file is read only when training sets up G: exporting the run later does not need it."""
    copy = tmp_path / "vgg19-copy.pth"
    copy.write_bytes(vgg_file.read_bytes())
    result = train(recipe(tmp_path, "spade", vgg_weights=str(copy)))
    assert result.history[-1]["vgg"] > 0
    copy.unlink()
    from imgsynth.training.export import export

    export(tmp_path / "run", tmp_path / "export")
    assert (tmp_path / "export" / "model.safetensors").exists()


def test_off_by_default_and_options_checked(tmp_path, vgg_file):
    result = train(recipe(tmp_path, "pix2pixhd"))
    assert "vgg" not in result.history[-1]
    assert "vgg" not in train(recipe(tmp_path, "pix2pixhd", "zero", vgg_weights=str(vgg_file), vgg=0.0)).history[-1]
    with pytest.raises(ConfigError, match=r"^model.options.vgg_weights: VGG-19 weights .* do not exist"):
        train(recipe(tmp_path, "spade", "missing", vgg_weights=str(tmp_path / "vgg19.pth")))
    vgg16 = tmp_path / "vgg16.pth"
    torch.save(VGG16Features().state_dict(), vgg16)
    with pytest.raises(ConfigError, match="not a torchvision VGG-19 state dict") as err:
        train(recipe(tmp_path, "pix2pix", "wrong", vgg_weights=str(vgg16)))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="model.options.vgg must not be negative"):
        train(recipe(tmp_path, "pix2pixhd", "neg", vgg_weights=str(vgg_file), vgg=-1.0))
