"""The Fréchet distance of Fashion-MNIST samplers, and its use in training runs."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from imgsynth.training.fid import Classifier, frechet_distance, load_classifier
from imgsynth.training.loop import train


def test_frechet_distance_matches_the_scipy_formula():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(0.3, 1.2, size=(300, 8)) @ rng.normal(size=(8, 8))
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    got = frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert abs(got - expected) <= 1e-6 * abs(expected)
    assert abs(frechet_distance(torch.from_numpy(a), torch.from_numpy(a))) < 1e-6 * abs(expected)
    shifted = torch.from_numpy(a) + 2.0  # same covariance: the squared distance of the means
    assert abs(frechet_distance(torch.from_numpy(a), shifted) - 4.0 * 8) < 1e-6 * 32


def _idx(path, array):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                + array.astype(np.uint8).tobytes())


def test_sampling_runs_on_fashion_mnist_log_the_distance_and_keep_the_best(tmp_path, tiny, monkeypatch, final_state):
    monkeypatch.setenv("IMGSYNTH_CACHE", str(tmp_path / "cache"))
    cfg = tiny(tmp_path, run={"steps": 4, "checkpoint_every": 2, "fid_samples": 64})
    messages = []
    train(cfg, progress=lambda p: messages.append(p.message) if p.kind == "info" else None)
    assert any("no Fashion-MNIST feature extractor" in m for m in messages)  # no classifier cached: grids only
    assert final_state(tmp_path / "run")["validation"]["history"] == []

    torch.manual_seed(0)
    (tmp_path / "cache").mkdir()
    save_file(Classifier().state_dict(), str(tmp_path / "cache" / "fmnist-classifier.safetensors"))
    assert load_classifier() is not None
    imgs = np.random.default_rng(1).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    _idx(tmp_path / "fm" / "t10k-images-idx3-ubyte.gz", imgs)
    events = []
    train(tiny(tmp_path, "with-fd", run={"steps": 4, "checkpoint_every": 2, "fid_samples": 64}),
          progress=lambda p: events.append((p.kind, p.step, dict(p.losses))) if p.kind in ("val", "best") else None)
    vals = [e for e in events if e[0] == "val"]
    assert [e[1] for e in vals] == [2, 4] and all(e[2]["val_fd"] > 0 for e in vals)
    state = final_state(tmp_path / "with-fd")
    assert state["validation"]["best"] == min(state["validation"]["history"], key=lambda r: r["val_fd"])
    assert (tmp_path / "with-fd" / "best").is_dir()
