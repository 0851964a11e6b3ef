import gzip
import json
import struct

import numpy as np
import pytest
import tomllib
import torch
from safetensors.torch import load_file

from imgsynth.engine.cards import parse_card
from imgsynth.engine.loading import load_model
from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model
from imgsynth.training.checkpoint import latest_checkpoint, load_checkpoint
from imgsynth.training.config import from_dict
from imgsynth.training.export import export
from imgsynth.training.loop import train


def write_fashion(root, n=16):
    root.mkdir(parents=True, exist_ok=True)
    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28) + imgs.tobytes())
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cfg = from_dict({
        "run": {"out_dir": str(tmp / "run"), "steps": 3, "grid_samples": 0},
        "data": {"source": "fashion-mnist", "path": str(write_fashion(tmp / "fm")), "resolution": 8,
                 "batch_size": 4, "license": "MIT"},
        "model": {"family": "dcgan", "generator": {"z_dim": 4, "ngf": 4}, "discriminator": {"ndf": 4}},
        "optim": {"ema_decay": 0.5},
        "export": {"name": "Tiny DCGAN test"},
    })
    train(cfg)
    return tmp / "run"


def test_export_writes_the_weights_contract(run_dir, tmp_path):
    result = export(run_dir, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["format"] == "imgsynth-weights" and meta["version"] == 1
    assert meta["arch"] == "dcgan" and meta["task"] == "sample"
    assert meta["config"] == {"z_dim": 4, "ngf": 4, "img_channels": 1, "img_resolution": 8}
    assert meta["io"] == {"value_range": [-1, 1], "image_channels": 1, "resolution": 8}
    assert meta["license"] == "MIT"
    assert meta["source"]["trained_by"] == "imgsynth train" and meta["source"]["steps"] == 3
    assert meta["source"]["dataset"] == "Fashion-MNIST (train)"
    weights = load_file(str(tmp_path / "out" / "model.safetensors"))
    expected = build_model("dcgan", meta["config"]).state_dict()
    assert weights.keys() == expected.keys()
    assert all(weights[k].shape == expected[k].shape for k in weights)
    # EMA weights, not the raw generator
    state = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert result.ema
    assert torch.equal(weights["main.0.weight"], state["G_ema"]["main.0.weight"])
    assert not torch.equal(weights["main.0.weight"], state["G"]["main.0.weight"])
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Fashion-MNIST (train)" in readme and "nonsaturating" in readme and "MIT" in readme
    assert "| steps | 3 x batch 4" in readme


def test_export_loads_with_the_engine_and_samples(run_dir, tmp_path):
    export(run_dir, tmp_path / "out")
    loaded = load_model("sample", weights=tmp_path / "out")
    z = loaded.model.dummy_inputs(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = loaded.model(*z)
    assert img.shape == (2, 1, 8, 8) and img.abs().max() <= 1


def test_export_fp16_and_raw_generator(run_dir, tmp_path):
    state = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    result = export(state, tmp_path / "half", dtype="fp16", use_ema=False)
    weights = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert weights["main.0.weight"].dtype == torch.float16
    assert weights["main.1.num_batches_tracked"].dtype == torch.int64
    torch.testing.assert_close(weights["main.0.weight"], state["G"]["main.0.weight"].half())
    assert not result.ema and result.dtype == "fp16"
    assert load_model("sample", weights=tmp_path / "half").model is not None


def test_card_stanza_is_a_valid_card(run_dir, tmp_path):
    result = export(run_dir, tmp_path / "out")
    data = tomllib.loads(result.card_toml)
    card = parse_card(data)
    assert card.id == "tiny-dcgan-test" and card.arch == "dcgan" and card.task == "sample"
    assert card.source.kind == "bundled" and card.source.sha256 == result.sha256
    assert card.config["img_resolution"] == 8 and card.license == "MIT"


def test_export_rejects_non_checkpoints(tmp_path):
    with pytest.raises(WeightsError, match="no checkpoint"):
        export(tmp_path, tmp_path / "out")
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        export(tmp_path / "x.safetensors", tmp_path / "out")
