"""``benchmarks/ab_speed.py``: another checkout's package side by side, same weights, alternating A/B."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.ab_speed import ab, as_base, import_base
from imgsynth.models import build_model, get_model

ROOT = Path(__file__).resolve().parents[1]


def test_base_package_runs_the_same_weights_alternating(tmp_path):
    base = import_base(ROOT, tmp_path, name="imgsynth_ab_test")
    assert base.__file__.startswith(str(tmp_path))
    torch.manual_seed(0)
    new = build_model("pix2pix_unet", get_model("pix2pix_unet").tiny).eval()
    (x,) = new.dummy_inputs(1, torch.Generator().manual_seed(0))
    old = as_base(new, name="imgsynth_ab_test")
    assert type(old).__module__ == "imgsynth_ab_test.models.pix2pix" and type(new).__module__ == "imgsynth.models.pix2pix"
    assert type(old.down[1]).__module__.startswith("imgsynth_ab_test.")
    assert torch.equal(old.down[1].conv.weight, new.down[1].conv.weight)
    r = ab(lambda: old(x), lambda: new(x), rounds=3)
    assert len(r["ratios"]) == 3 and r["ratio"] > 0 and r["rel_err"] < 1e-6
