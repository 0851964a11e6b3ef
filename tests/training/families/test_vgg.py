"""The VGG-19 perceptual term of the translation families (pix2pix, pix2pixhd, spade)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError
from imgsynth.training.config import from_dict
from imgsynth.training.families import get_family
from imgsynth.training.loop import train
from imgsynth.training.losses import VGG16Features, VGG19Features, vgg_feature_loss


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
