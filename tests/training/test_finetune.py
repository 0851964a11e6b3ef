"""``[model] init_from``: every family starts from a checkpoint (G and D), an export or a card id (G only)."""

from __future__ import annotations

import shutil
import tomllib

import numpy as np
import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.training.config import from_dict
from imgsynth.training.export import export
from imgsynth.training.loop import Trainer, train
from imgsynth.training.recipes import FAMILY_DATA, new_recipe

TINY = {
    "dcgan": ({"ngf": 4}, {"ndf": 4}),
    "gan": ({"hidden_sizes": [16]}, {"hidden_sizes": [16]}),
    "progan": ({"z_dim": 8, "channels": [8, 8, 8, 8]}, {}),
    "stylegan": ({"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "mapping_features": 8, "fmap_base": 32,
                  "fmap_max": 8}, {}),
    "stylegan2": ({"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "channel_max": 8},
                  {"channel_base": 64, "channel_max": 8}),
    "pix2pix": ({"num_downs": 5, "ngf": 4}, {"ndf": 4, "n_layers": 2}),
    "pix2pixhd": ({"ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1}, {"ndf": 4, "n_layers": 1, "num_D": 1}),
    "spade": ({"ngf": 2, "nhidden": 8}, {"ndf": 4, "n_layers": 1, "num_D": 1}),
    "panoptic": ({"ngf": 2, "nhidden": 8}, {"ndf": 4, "n_layers": 1, "num_D": 1}),
    "pconv": ({"layer_size": 4, "widths": [4, 8, 8, 8]}, {}),
}


def _data(root):
    import gzip
    import struct

    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("photos", "labels", "targets", "fm"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(root / "photos" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(root / "targets" / f"{i}.png")
        Image.fromarray(rng.integers(0, 4, (36, 36), dtype=np.uint8)).save(root / "labels" / f"{i}.png")
    imgs = np.zeros((8, 28, 28), np.uint8)
    imgs[:, 6:20, 6:20] = rng.integers(1, 256, (8, 14, 14))
    for name, arr in (("train-images-idx3-ubyte.gz", imgs), ("train-labels-idx1-ubyte.gz", np.arange(8) % 10)):
        with gzip.open(root / "fm" / name, "wb") as f:
            f.write(bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes())
    return {
        "pix2pix": {"data": root / "photos", "target": root / "targets"},
        "pix2pixhd": {"data": root / "labels", "target": root / "targets"},
        "spade": {"data": root / "labels", "target": root / "targets"},
        "panoptic": {"data": root / "fm"},
    }


def recipe(root, family, out, init_from="", tables=True):
    kwargs = _data(root).get(family, {"data": root / "photos"})
    raw = tomllib.loads(new_recipe(family, size=32, name=f"ft-{family}", steps=1, **kwargs)[0])
    g, d = TINY[family]
    if tables:
        raw["model"]["generator"] = {**raw["model"].get("generator", {}), **g}
        raw["model"]["discriminator"] = {**raw["model"].get("discriminator", {}), **d}
    else:
        raw["model"].pop("generator", None)
        raw["model"].pop("discriminator", None)
    raw["model"]["init_from"] = init_from
    raw["run"].update(out_dir=str(root / out), grid_samples=1)
    raw["data"]["batch_size"] = 2
    raw["optim"]["ema_start"] = 0
    if family == "progan":  # grow every scale within 4 steps, so that an export holds them all
        raw["model"]["options"].update(steps_per_scale=1, fade_steps=0)
        raw["run"]["steps"] = 4
    return from_dict(raw)


def setup(cfg):
    trainer = Trainer(cfg)
    trainer._setup()
    return trainer


def same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k].float().cpu(), b[k].float().cpu()), k


@pytest.mark.parametrize("family", sorted(FAMILY_DATA))
def test_every_family_fine_tunes_from_a_checkpoint_an_export_and_a_card(tmp_path, monkeypatch, family, final_state):
    train(recipe(tmp_path, family, "source"))
    src = final_state(tmp_path / "source")

    # a run folder: G (its EMA) and D, with the source's configs when the recipe's tables are empty
    t = setup(recipe(tmp_path, family, "from-run", init_from=str(tmp_path / "source"), tables=False))
    same(t.G.state_dict(), src["G_ema"])
    same(t.D.state_dict(), src["D"])
    assert t.g_config == src["generator_config"] and t._init_message.startswith("G and D initialised from checkpoint")

    # an export folder: G only
    out = export(tmp_path / "source", tmp_path / "export")
    t = setup(recipe(tmp_path, family, "from-export", init_from=str(tmp_path / "export")))
    same(t.G.state_dict(), src["G_ema"])
    assert t._init_message.startswith("G initialised from export")

    # a card id (the export as a bundled card in a weights folder of its own)
    weights = tmp_path / "weights"
    weights.mkdir()
    card = tomllib.loads(out.card_toml)
    shutil.copy(tmp_path / "export" / "model.safetensors", weights / card["source"]["path"])
    (weights / f"{card['id']}.toml").write_text(out.card_toml)
    monkeypatch.setenv("IMGSYNTH_WEIGHTS_DIR", str(weights))
    cfg = recipe(tmp_path, family, "from-card", init_from=card["id"], tables=False)
    assert setup(cfg)._init_message.startswith(f"G initialised from card {card['id']}")
    result = train(cfg)  # and it trains
    assert result.step == cfg.run.steps
    first = final_state(tmp_path / "from-card")
    assert first["generator_config"] == src["generator_config"]


def test_mismatch_names_the_first_key_and_arch_is_checked(tmp_path):
    train(recipe(tmp_path, "dcgan", "source"))
    cfg = recipe(tmp_path, "dcgan", "wide", init_from=str(tmp_path / "source"))
    cfg.model.generator["ngf"] = 8
    with pytest.raises(ConfigError, match=r"model.init_from: the generator of checkpoint .* does not fit "
                                          r"\[model.generator\]: main.0.weight has shape \(64, 16, 4, 4\) in the source, "
                                          r"\(64, 32, 4, 4\) in the model$"):
        setup(cfg)
    with pytest.raises(ConfigError, match=r"is a 'dcgan' checkpoint, not 'gan'"):
        setup(recipe(tmp_path, "gan", "other", init_from=str(tmp_path / "source")))
    with pytest.raises(ConfigError, match=r"model.init_from: 'no-such-card'"):
        setup(recipe(tmp_path, "dcgan", "nocard", init_from="no-such-card"))
