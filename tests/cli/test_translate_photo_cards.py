"""The bundled photo-patch translation cards: offline, their declared input kind by default, any size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("card,kind,other", [
    ("pix2pix-edges-photos", "edges", "gray"),        # Canny outline, not the luminance
    ("pix2pix-clusters-photos", "clusters", "image"),  # posterised first, not fed as is
])
def test_bundled_photo_card_translates_offline(card, kind, other, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    y, x = np.mgrid[:36, :52]
    rgb = np.stack([x * 4, y * 6, np.full_like(x, 120)], 2).astype(np.uint8)
    rgb[8:24, 10:30] = (230, 40, 40)  # a sharp red square: Canny finds its outline, k-means its colour
    photo = tmp_path / "small.png"
    Image.fromarray(rgb).save(photo)

    outs = {}
    for name, extra in [("default", []), (kind, ["--input-kind", kind]), (other, ["--input-kind", other])]:
        out = tmp_path / f"{name}.png"
        res = runner.invoke(app, ["translate", str(photo), "--model", card, "--offline", "-o", str(out), *extra])
        assert res.exit_code == 0, res.stderr
        with Image.open(out) as im:
            assert im.size == (52, 36) and im.mode == "RGB"
            outs[name] = np.asarray(im)
    # the card declares its input kind: without --input-kind the photo is converted that way
    np.testing.assert_array_equal(outs["default"], outs[kind])
    assert not np.array_equal(outs["default"], outs[other])
    if kind == "clusters":
        # colours survive the cluster map: the red square stays redder than its surroundings
        square, rest = outs["default"][10:22, 12:28].astype(float), outs["default"][28:, 35:].astype(float)
        assert square[..., 0].mean() - square[..., 1].mean() > rest[..., 0].mean() - rest[..., 1].mean() + 40
