"""``benchmarks/crops_figure.py``: 100 % crops laid out by row and column, bad input refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import crops_figure as fig  # noqa: E402


def _images():
    rng = np.random.default_rng(0)
    return [("a", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)),
            ("b", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))]


def test_crops_are_unscaled_and_laid_out_by_row_and_column():
    images = _images()
    crops = [(10, 40, 20, 70), (50, 70, 60, 110)]
    out = fig.crops_figure(images, crops)
    assert out.shape == (fig.HEADER + 30 + fig.GAP + 20, 2 * 50 + fig.GAP, 3)
    for col, (_, img) in enumerate(images):
        x = col * (50 + fig.GAP)
        top = fig.HEADER
        assert np.array_equal(out[top:top + 30, x:x + 50], img[10:40, 20:70])
        top += 30 + fig.GAP
        assert np.array_equal(out[top:top + 20, x:x + 50], img[50:70, 60:110])


@pytest.mark.parametrize("crops, images, message", [
    ([(0, 10, 0, 10), (0, 10, 0, 20)], None, "same width"),
    ([(0, 100, 0, 10)], None, "outside"),
    ([(0, 10, 0, 10)], [("a", np.zeros((9, 9, 3), np.uint8)), ("b", np.zeros((8, 9, 3), np.uint8))], "b: 9x8"),
])
def test_bad_layouts_are_refused(crops, images, message):
    with pytest.raises(ValueError, match=message):
        fig.crops_figure(images or _images(), crops)


def test_command_line(tmp_path):
    (_, a), (_, b) = _images()
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "b.png"), b)
    script = str(ROOT / "benchmarks" / "crops_figure.py")
    out = tmp_path / "f.png"
    run = subprocess.run([sys.executable, script, "-o", str(out), "--crop", "10:40,20:70",
                          f"first={tmp_path / 'a.png'}", f"second={tmp_path / 'b.png'}"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert cv2.imread(str(out)).shape == (fig.HEADER + 30, 2 * 50 + fig.GAP, 3)
    bad = subprocess.run([sys.executable, script, "-o", str(out), "--crop", "10-40", f"x={tmp_path / 'a.png'}"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "expected Y0:Y1,X0:X1" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, script, "-o", str(out), "--crop", "0:5,0:5", f"x={tmp_path / 'no.png'}"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no.png: not a readable image" in missing.stderr
