"""``train new``'s recipe writer: every family gets a recipe that loads and trains, with the user's name."""

from __future__ import annotations

import gzip
import struct
import tomllib

import numpy as np
import pytest
from PIL import Image

from imgsynth.errors import ConfigError, UsageError
from imgsynth.training.config import apply_overrides, from_dict
from imgsynth.training.loop import train
from imgsynth.training.recipes import FAMILY_DATA, new_recipe


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def data(tmp_path):
    """photos/ (48x40 colour), labels/ (ids 0..3) and targets/ paired by name, fm/ (Fashion-MNIST IDX)."""
    rng = np.random.default_rng(0)
    for sub in ("photos", "labels", "targets", "fm"):
        (tmp_path / sub).mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "targets" / f"{i}.png")
        Image.fromarray(rng.integers(0, 4, (40, 48), dtype=np.uint8)).save(tmp_path / "labels" / f"{i}.png")
    imgs = np.zeros((12, 28, 28), np.uint8)
    for i in range(12):
        imgs[i, 4 + i % 5 : 18 + i % 5, 6:20] = rng.integers(1, 256, (14, 14))
    _idx(tmp_path / "fm" / "train-images-idx3-ubyte.gz", imgs)
    _idx(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", np.arange(12) % 10)
    return tmp_path


def cases(root):
    photos = root / "photos"
    return {
        "dcgan": {"data": photos}, "gan": {"data": photos}, "progan": {"data": photos},
        "stylegan": {"data": photos}, "stylegan2": {"data": photos},
        "pix2pix": {"data": photos, "derive": "edges"},
        "pix2pixhd": {"data": root / "labels", "target": root / "targets"},
        "spade": {"data": root / "labels", "target": root / "targets"},
        "panoptic": {"data": root / "fm"}, "pconv": {"data": photos},
    }


@pytest.mark.parametrize("family", sorted(FAMILY_DATA))
def test_every_family_gets_a_recipe_that_trains(data, family):
    text, info = new_recipe(family, size=32, name=f"mine-{family}", **cases(data)[family])
    raw = tomllib.loads(text)
    # the user's run name everywhere, never a bundled one
    assert raw["run"]["out_dir"] == f"runs/mine-{family}" and raw["export"]["name"] == f"mine-{family}"
    assert raw["model"]["family"] == family and raw["data"]["resolution"] == 32 == info.size
    assert text.count("# ") > 20  # commented
    raw = apply_overrides(raw, ["run.steps=1", "data.batch_size=2", "run.grid_samples=2",
                                f'run.out_dir="{data / "runs" / family}"'])
    result = train(from_dict(raw))
    assert result.step == 1 and np.isfinite(list(result.history[-1].values())).all()


def test_sources_fit_and_ada_follow_the_data(data):
    text, info = new_recipe("dcgan", data / "photos", size=32)
    raw = tomllib.loads(text)
    assert info.source == raw["data"]["source"] == "folder"
    assert info.fit == raw["data"]["fit"] == "crop" and "chosen: crop" in text and "alternatives: resize, pad" in text
    assert raw["augment"]["ada"] == "on" and raw["data"]["batch_size"] == 4  # 6 images: batch <= items
    assert info.name == "dcgan-photos" and raw["export"]["license"] == ""
    raw = tomllib.loads(new_recipe("dcgan", data / "photos", size=16, fit="resize")[0])
    assert raw["data"]["fit"] == "resize"
    fm = tomllib.loads(new_recipe("stylegan2", data / "fm")[0])
    assert fm["data"]["source"] == "fashion-mnist" and fm["data"]["fit"] == "pad" and fm["data"]["resolution"] == 32
    assert tomllib.loads(new_recipe("spade", data / "fm")[0])["data"]["source"] == "fashion-mnist-labels"
    hd = tomllib.loads(new_recipe("pix2pixhd", data / "labels", target=data / "targets", size=32)[0])
    assert hd["data"]["label_nc"] == 4 and hd["data"]["path_b"] == str(data / "targets")
    # the default size never exceeds the images (40 px short side -> 32)
    assert new_recipe("pconv", data / "photos")[1].size == 32


@pytest.mark.parametrize("family, kwargs, message", [
    ("pix2pix", {}, "needs --target DIR"),
    ("spade", {}, "needs --target DIR"),
    ("panoptic", {}, "Fashion-MNIST mosaics"),
    ("dcgan", {"size": 48}, "power of two"),
    ("dcgan", {"fit": "stretch"}, "crop, resize or pad"),
    ("dcgan", {"derive": "edges"}, "--derive makes pix2pix inputs"),
])
def test_clear_errors(data, family, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        new_recipe(family, data / "photos", **kwargs)


def test_unknown_family_is_a_usage_error_with_a_suggestion(data):
    with pytest.raises(UsageError, match=r"^unknown family 'stylegan4'; did you mean 'stylegan'\?$"):
        new_recipe("stylegan4", data / "photos")
    with pytest.raises(UsageError, match=r"^unknown family 'diffusion'; known: dcgan, gan, progan"):
        new_recipe("diffusion", data / "photos")
