"""Shared training-test fixtures.

Training tests run their tiny networks on one thread: fastest for tiny networks, and on a busy
2-core machine spinning OpenMP threads are very slow (OMP_WAIT_POLICY is fixed once torch has loaded).
``final_state`` reads a run's last checkpoint; ``assert_same`` compares two (nested) states bit for bit;
``compare_runs`` compares two final checkpoints; ``tiny`` makes a tiny DCGAN recipe on a generated
Fashion-MNIST file and ``write_fashion`` writes such a file.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from imgsynth.training.checkpoint import list_checkpoints, load_checkpoint
from imgsynth.training.config import from_dict
from imgsynth.training.losses import VGG19Features


def _write_fashion(root, n=24, seed=0):
    root.mkdir(parents=True, exist_ok=True)
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28) + imgs.tobytes())
    return root


def _tiny(tmp_path, out="run", **sections):
    data_dir = _write_fashion(tmp_path / "fm")
    raw = {
        "run": {"out_dir": str(tmp_path / out), "steps": 4, "log_every": 2, "sample_every": 100,
                "checkpoint_every": 100, "grid_samples": 4, "keep_checkpoints": 0},
        "data": {"source": "fashion-mnist", "path": str(data_dir), "resolution": 8, "load_size": 10,
                 "hflip": True, "batch_size": 4},
        "model": {"family": "dcgan", "generator": {"z_dim": 4, "ngf": 4}, "discriminator": {"ndf": 4}},
        "optim": {"ema_decay": 0.9},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return from_dict(raw)


@pytest.fixture
def write_fashion():
    """``write_fashion(root, n=24, seed=0)``: a random Fashion-MNIST train-images file in ``root``."""
    return _write_fashion


@pytest.fixture
def tiny():
    """``tiny(tmp_path, out="run", **sections)``: a 4-step 8 px DCGAN recipe, sections updated."""
    return _tiny


def _final_state(out_dir):
    return load_checkpoint(list_checkpoints(out_dir / "checkpoints")[-1][1])


def _assert_same(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    else:
        assert a == b, path


@pytest.fixture
def final_state():
    """``final_state(out_dir)``: the last checkpoint of the run in ``out_dir``."""
    return _final_state


@pytest.fixture
def assert_same():
    """``assert_same(a, b)``: tensors, dicts of them and plain values equal bit for bit."""
    return _assert_same


@pytest.fixture
def compare_runs(assert_same):
    """``compare_runs(a, b)``: two final checkpoints agree in weights, optimisers, data order, RNGs."""

    def compare(a, b, history=True):
        for key in ("G", "D", "G_ema", "opt_g", "opt_d", "data", "step"):
            assert_same(a[key], b[key], key)
        if history:
            assert a["history"] == b["history"]
        for ra, rb in zip(a["rng"], b["rng"]):
            assert torch.equal(ra["torch"], rb["torch"]) and torch.equal(ra["noise"], rb["noise"])
            assert ra["numpy"] == rb["numpy"] and ra["python"] == rb["python"]

    return compare


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


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
