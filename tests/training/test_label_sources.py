"""Fashion-MNIST label-map and mosaic data sources, and the panoptic training family."""

import gzip
import struct

import numpy as np
import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.training.config import DataConfig, from_dict
from imgsynth.training.data import FashionMNISTLabels, FashionMosaics, build_dataset
from imgsynth.training.loop import train


def _idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion(root, n=12):
    """Blobby garments (a bright block on black) with classes 0..9 cycling."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        t, l = rng.integers(2, 10, 2)
        imgs[i, t : t + 14, l : l + 12] = rng.integers(1, 256, (14, 12))
    classes = np.arange(n) % 10
    for stem in ("train", "t10k"):
        _idx(root / f"{stem}-images-idx3-ubyte.gz", imgs)
        _idx(root / f"{stem}-labels-idx1-ubyte.gz", classes)
    return imgs, classes


def test_fashion_label_maps_follow_the_rule_and_share_geometry(tmp_path):
    imgs, classes = write_fashion(tmp_path)
    cfg = DataConfig(source="fashion-mnist-labels", path=str(tmp_path), label_nc=11, resolution=32,
                     fit="pad", channels=3, hflip=True)
    ds = build_dataset(cfg, seed=3)
    assert isinstance(ds, FashionMNISTLabels) and ds.kind == "paired" and ds.channels == 3 and len(ds) == 12
    flips = 0
    for i in range(len(ds)):
        item = ds[(i, 1)]
        label, b = item["label"][0].numpy(), item["b"]
        assert label.shape == (32, 32) and label.dtype == np.int64 and b.shape == (3, 32, 32)
        want = np.pad((imgs[i] > 0) * (classes[i] + 1), 2)
        flipped = not np.array_equal(label, want)
        flips += flipped
        assert np.array_equal(label, want[:, ::-1] if flipped else want)
        # the label is non-zero exactly where the image is not black
        assert np.array_equal(label > 0, (b[0] > -1).numpy())
    assert 0 < flips < len(ds)


def test_label_sources_need_eleven_labels(tmp_path):
    write_fashion(tmp_path)
    for source in ("fashion-mnist-labels", "mosaics"):
        with pytest.raises(ConfigError, match=r"set data.label_nc = 11"):
            build_dataset(DataConfig(source=source, path=str(tmp_path), label_nc=10, resolution=32))
    with pytest.raises(ConfigError, match=r"leave data.load_size at 0"):
        build_dataset(DataConfig(source="mosaics", path=str(tmp_path), label_nc=11, resolution=32, load_size=40))


def test_mosaic_items_are_seeded_consistent_and_flipped_together(tmp_path):
    write_fashion(tmp_path)
    cfg = DataConfig(source="mosaics", path=str(tmp_path), label_nc=11, resolution=40, channels=3, hflip=True)
    ds = build_dataset(cfg, seed=0)
    assert isinstance(ds, FashionMosaics) and ds.has_instances and len(ds) == 12
    test = build_dataset(DataConfig(source="mosaics", path=str(tmp_path), label_nc=11, resolution=40,
                                    split="test"))
    assert not np.array_equal(ds.mosaics(0).instance, test.mosaics(0).instance)  # held-out layouts
    for i in range(4):
        item = ds[(i, 2)]
        assert all(torch.equal(item[k], ds[(i, 2)][k]) for k in item)
        label, inst, pan = item["label"][0], item["inst"][0], item["panoptic"][0]
        assert torch.equal(pan, torch.where(inst > 0, label * 1000 + inst, 0))
        assert torch.equal(label > 0, inst > 0) and torch.equal(label > 0, item["b"][0] > -1)
        m = ds.mosaics(i)
        same = np.array_equal(inst.numpy(), m.instance)
        assert same or np.array_equal(inst.numpy(), m.instance[:, ::-1])
        assert np.array_equal(item["label"][0].numpy(), m.semantic if same else m.semantic[:, ::-1])


def test_mosaic_items_can_be_scaled_down(tmp_path):
    imgs, _ = write_fashion(tmp_path)
    cfg = DataConfig(source="mosaics", path=str(tmp_path), label_nc=11, resolution=24, item_size=14)
    ds = build_dataset(cfg)
    assert ds.mosaics.items.shape == (12, 14, 14)
    # area resampling: a 2x2 block of the item becomes its mean
    assert ds.mosaics.items[0, 3, 4] == round(imgs[0, 6:8, 8:10].mean()) or abs(
        int(ds.mosaics.items[0, 3, 4]) - imgs[0, 6:8, 8:10].mean()) <= 1
    assert ds[0]["label"].shape == (1, 24, 24)
    with pytest.raises(ConfigError, match=r"data.item_size must be 0"):
        build_dataset(DataConfig(source="mosaics", path=str(tmp_path), label_nc=11, resolution=24, item_size=-1))


def _recipe(tmp_path, family, generator, out, **loss):
    return from_dict({
        "run": {"out_dir": str(tmp_path / out), "steps": 2, "grid_samples": 2},
        "data": {"source": "mosaics", "path": str(tmp_path / "fm"), "label_nc": 11, "resolution": 32,
                 "channels": 3, "batch_size": 2},
        "model": {"family": family, "generator": generator,
                  "discriminator": {"ndf": 4, "n_layers": 2, "num_D": 1, "spectral_norm": True}},
        "loss": {"gan": "hinge", "feature_matching": 10.0, **loss},
    })


def test_panoptic_family_trains_exports_and_translates(tmp_path):
    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.translate import TranslateInput, Translator
    from imgsynth.training.checkpoint import latest_checkpoint, load_checkpoint
    from imgsynth.training.export import export

    write_fashion(tmp_path / "fm")
    gen = {"ngf": 2, "nhidden": 8, "num_upsampling_layers": "normal"}
    result = train(_recipe(tmp_path, "panoptic", gen, "pan", l1=5.0))
    assert {"d", "g", "fm", "l1"} <= set(result.history[-1])
    state = load_checkpoint(latest_checkpoint(tmp_path / "pan" / "checkpoints"))
    assert state["arch"] == "panoptic" and state["generator_config"]["label_nc"] == 11
    # D sees 11 one-hot channels + the instance edges + RGB, like the SPADE baseline's D
    assert state["discriminator_config"]["input_nc"] == 15
    export(tmp_path / "pan", tmp_path / "export")
    loaded = load_model("translate", weights=tmp_path / "export")
    tr = Translator(loaded.model, loaded.io)
    ds = build_dataset(DataConfig(source="mosaics", path=str(tmp_path / "fm"), label_nc=11, resolution=32))
    m = ds.mosaics(0)
    img, how = tr.translate_one(TranslateInput("m", label=m.semantic, panoptic=m.panoptic))
    assert img.shape == (32, 32, 3) and how == "none"


def test_spade_on_mosaics_gets_the_instance_edge_channel(tmp_path):
    from imgsynth.training.checkpoint import latest_checkpoint, load_checkpoint

    write_fashion(tmp_path / "fm")
    result = train(_recipe(tmp_path, "spade", {"ngf": 2, "nhidden": 8, "contain_dontcare": False}, "sp"))
    assert "l1" not in result.history[-1]  # off by default
    state = load_checkpoint(latest_checkpoint(tmp_path / "sp" / "checkpoints"))
    assert state["generator_config"]["use_instance"] is True
    assert state["discriminator_config"]["input_nc"] == 15


def test_panoptic_family_needs_panoptic_maps(tmp_path):
    write_fashion(tmp_path / "fm")
    cfg = _recipe(tmp_path, "panoptic", {"ngf": 2, "nhidden": 8, "num_upsampling_layers": "normal"}, "x")
    cfg.data.source = "fashion-mnist-labels"
    with pytest.raises(ConfigError, match=r"set data.source = \"mosaics\""):
        train(cfg)


def test_recalibrated_export_loads_and_keeps_its_dtype(tmp_path):
    from safetensors.torch import load_file

    from imgsynth.training.config import dumps_config
    from imgsynth.training.export import export
    from imgsynth.training.recalibrate import recalibrate_export

    write_fashion(tmp_path / "fm")
    cfg = _recipe(tmp_path, "spade", {"ngf": 2, "nhidden": 8, "contain_dontcare": False}, "sp")
    train(cfg)
    export(tmp_path / "sp", tmp_path / "ex", dtype="fp16")
    before = load_file(str(tmp_path / "ex" / "model.safetensors"))
    (tmp_path / "recipe.toml").write_text(dumps_config(cfg))
    sha = recalibrate_export(tmp_path / "recipe.toml", tmp_path / "ex", batches=2)
    after = load_file(str(tmp_path / "ex" / "model.safetensors"))
    assert len(sha) == 64 and before.keys() == after.keys()
    assert all(after[k].dtype == before[k].dtype for k in before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("running_" in k or "num_batches" in k for k in changed)
