"""Loading exported folders and cards: corrupt files and mismatches give one-line errors."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from imgsynth.engine.loading import load_model
from imgsynth.errors import UsageError, WeightsError


def test_export_roundtrip(make_export):
    d = make_export("dcgan")
    loaded = load_model("sample", weights=d)
    assert loaded.arch == "dcgan" and not loaded.model.training
    assert all(not p.requires_grad for p in loaded.model.parameters())


def test_bf16_load(make_export):
    loaded = load_model("sample", weights=make_export("dcgan"), dtype=torch.bfloat16)
    assert next(loaded.model.parameters()).dtype is torch.bfloat16


def test_corrupt_safetensors(make_export):
    d = make_export("dcgan")
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_model("sample", weights=d)


def test_weights_that_do_not_fit(make_export):
    d = make_export("dcgan")
    cfg = json.loads((d / "config.json").read_text())
    cfg["config"]["ngf"] = cfg["config"]["ngf"] * 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="do not fit architecture 'dcgan'"):
        load_model("sample", weights=d)


def test_task_mismatch_and_bad_folder(make_export, tmp_path):
    with pytest.raises(UsageError, match="is a 'sample' model"):
        load_model("inpaint", weights=make_export("dcgan"))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="invalid JSON"):
        load_model("sample", weights=tmp_path / "x")
    (tmp_path / "x" / "config.json").write_text('{"arch": "dcgan"}')
    with pytest.raises(WeightsError, match="not an imgsynth export"):
        load_model("sample", weights=tmp_path / "x")
    with pytest.raises(UsageError, match="either --model or --weights"):
        load_model("sample", weights=tmp_path / "x", model="telea")


def test_card_with_bundled_weights(make_export, cards_dir):
    d = make_export("dcgan")
    data = (d / "model.safetensors").read_bytes()
    (cards_dir / "tiny.safetensors").write_bytes(data)
    cfg = json.loads((d / "config.json").read_text())["config"]
    cfg_toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in cfg.items())
    (cards_dir / "tiny.toml").write_text(
        f'id = "tiny"\narch = "dcgan"\ntask = "sample"\ntitle = "t"\nlicense = "MIT"\ndefault = true\n'
        f'task_default = true\n[source]\nkind = "bundled"\npath = "tiny.safetensors"\n'
        f'sha256 = "{hashlib.sha256(data).hexdigest()}"\n[config]\n{cfg_toml}\n')
    loaded = load_model("sample")
    assert loaded.model_id == "tiny" and loaded.card.default
    assert load_model("sample", model="dcgan").model_id == "tiny"  # arch name -> its default card
