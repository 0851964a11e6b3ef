"""``examples/train/get_photos.py`` offline: the tiling, and the validation photos kept out of train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("get_photos", ROOT / "examples" / "train" / "get_photos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiles_cover_each_photo_at_the_scales_it_allows(tmp_path):
    gp = _script()
    src = tmp_path / "train"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(src / "wide.png")
    Image.fromarray(rng.integers(0, 256, (700, 700), dtype=np.uint8)).save(src / "gray.png")
    n = gp.make_tiles(src, tmp_path / "tiles")
    tiles = sorted((tmp_path / "tiles").iterdir())
    assert n == len(tiles)
    # wide: only 256 (the short side is 300 < 384): 427 px wide -> 2 columns; gray: 256, 384 and 576
    assert sum(t.name.startswith("wide_s256") for t in tiles) == 2
    assert not any(t.name.startswith("wide_s384") for t in tiles)
    assert {t.name.split("_")[1] for t in tiles if t.name.startswith("gray")} == {"s256", "s384", "s576"}
    assert sum(t.name.startswith("gray_s576") for t in tiles) == 3 * 3  # 576 px, a tile every 192 px
    for t in tiles:
        with Image.open(t) as im:
            assert im.size == (256, 256) and im.mode == "RGB"
    assert gp.starts(256) == [0] and gp.starts(576) == [0, 160, 320]


def test_validation_and_evaluation_photos_are_not_training_photos():
    gp = _script()
    whitelisted = {f"mate_{n}.jpg" for n in gp.MATE} | {f"lomiri_{n}.jpg" for n in gp.LOMIRI} \
        | {"opencv_home.jpg"}
    assert set(gp.VAL) <= whitelisted
    held_out = set(gp.EVAL_MATE) | set(gp.EVAL_LOMIRI) | set(gp.EVAL_PLASMA) | set(gp.EVAL_OPENCV)
    assert not held_out & (set(gp.MATE) | set(gp.LOMIRI) | set(gp.PLASMA) | set(gp.OPENCV) | set(gp.EXTRA_LOMIRI))
