"""``benchmarks/inpaint_photos.py``: masks in their ratio bands, metrics, and a run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import inpaint_photos as bench  # noqa: E402


def test_masks_land_in_their_setting_and_are_seeded():
    for setting, (lo, hi) in bench.SETTINGS.items():
        m = bench.photo_mask((300, 400), setting, seed=3)
        assert lo < m.mean() <= hi
        assert np.array_equal(m, bench.photo_mask((300, 400), setting, seed=3))


def test_metrics():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    hole = np.zeros((64, 64), bool)
    hole[20:40, 20:44] = True
    region = bench.region_of(hole)
    assert region[4:56, 4:60].all() and not region[0, 0]  # the hole's box grown by 16 px
    assert bench.region_psnr(truth, truth, region) > 90 and bench.region_ssim(truth, truth, region) > 0.999
    assert abs(bench.texture_ratio(truth, truth, hole) - 1.0) < 1e-6
    flat = truth.copy()
    flat[hole] = truth[hole].mean(0).astype(np.uint8)
    assert bench.texture_ratio(flat, truth, hole) < 0.01  # a smooth fill has no texture


def test_end_to_end_through_the_cli(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "t.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inpaint_photos.py"), "--photos", str(photos), "--min-side", "64",
         "--sizes", "native", "--settings", "object", "--methods", "telea", "--work", str(tmp_path / "w"),
         "--out", str(out), "--md", str(tmp_path / "t.md")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["method"] == "telea" and rows[0]["done"] == 2 and rows[0]["rc"] == 0
    assert rows[0]["known_exact"] and rows[0]["peak_rss_mb"] > 10 and rows[0]["s_per_photo"] > 0
    assert "| native | object | telea |" in (tmp_path / "t.md").read_text()
