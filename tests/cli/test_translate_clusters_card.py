"""The bundled ``pix2pix-clusters-photos`` card: offline, colour clusters by default, any photo size."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app

runner = CliRunner()


def test_bundled_clusters_card_translates_a_photo_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    y, x = np.mgrid[:36, :52]
    rgb = np.stack([x * 4, y * 6, np.full_like(x, 120)], 2).astype(np.uint8)
    rgb[8:24, 10:30] = (230, 40, 40)
    photo = tmp_path / "small.png"
    Image.fromarray(rgb).save(photo)

    outs = {}
    for name, extra in [("default", []), ("clusters", ["--input-kind", "clusters"]), ("image", ["--input-kind", "image"])]:
        out = tmp_path / f"{name}.png"
        res = runner.invoke(app, ["translate", str(photo), "--model", "pix2pix-clusters-photos", "--offline",
                                  "-o", str(out), *extra])
        assert res.exit_code == 0, res.stderr
        with Image.open(out) as im:
            assert im.size == (52, 36) and im.mode == "RGB"
            outs[name] = np.asarray(im)
    # the card declares clusters: without --input-kind the photo is posterised first, not fed as is
    np.testing.assert_array_equal(outs["default"], outs["clusters"])
    assert not np.array_equal(outs["default"], outs["image"])
    # the output keeps the input's colours roughly: the red square stays redder than its surroundings
    square, rest = outs["default"][10:22, 12:28].astype(float), outs["default"][28:, 35:].astype(float)
    assert square[..., 0].mean() - square[..., 1].mean() > rest[..., 0].mean() - rest[..., 1].mean() + 40
