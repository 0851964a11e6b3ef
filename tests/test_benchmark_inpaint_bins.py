"""``benchmarks/inpaint_bins.py`` end to end on tiny photos: rows per method, bin and ensemble size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_rows_for_each_network_ensemble_size_and_method(tmp_path, make_export):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    export = make_export("pconv_unet")
    out = tmp_path / "table.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inpaint_bins.py"), "--photos", str(photos),
         "--weights", str(export), "--methods", "telea", "--ensemble", "1,2", "--per-bin", "1",
         "--size", "64", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    name = export.name
    assert {r["method"] for r in rows} == {"telea", name, f"{name} x2"}
    assert len(rows) == 3 * 6 and all(r["n"] == 2 for r in rows)
    by = {(r["method"], r["bin"]): r for r in rows}
    # the two ensemble sizes fill differently; known pixels are exact, so small holes score high
    assert any(by[(name, b)]["psnr"] != by[(f"{name} x2", b)]["psnr"] for b in {r["bin"] for r in rows})
    assert by[("telea", "(0.01, 0.1]")]["psnr"] > by[("telea", "(0.5, 0.6]")]["psnr"]
    # noise photos: Telea's smooth fill has far less Laplacian energy in the hole than the photo
    assert all(0 <= by[("telea", b)]["texture"] < 0.5 for b in {r["bin"] for r in rows})


def test_texture_ratio_is_one_for_the_photo_and_zero_for_a_flat_fill():
    from benchmarks.inpaint_bins import texture_ratio

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    hole = np.zeros((48, 48), bool)
    hole[12:36, 10:30] = True
    flat = photo.copy()
    flat[hole] = 128
    assert texture_ratio(photo, photo, hole) == 1.0
    inner = np.zeros_like(hole)
    inner[14:34, 12:28] = True  # away from the hole's edge, where the flat patch meets the photo
    assert texture_ratio(flat, photo, inner) == 0.0
    assert 0 < texture_ratio(flat, photo, hole) < 1
