"""The bundled ``pix2pix-edges-photos`` card: offline, Canny edges by default, any photo size."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app

runner = CliRunner()


def test_bundled_edges_card_translates_a_photo_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    y, x = np.mgrid[:36, :52]
    rgb = np.stack([x * 4, y * 6, np.full_like(x, 120)], 2).astype(np.uint8)
    rgb[8:24, 10:30] = (230, 40, 40)  # a sharp square: Canny finds its outline
    photo = tmp_path / "small.png"
    Image.fromarray(rgb).save(photo)

    outs = {}
    for name, extra in [("default", []), ("edges", ["--input-kind", "edges"]), ("gray", ["--input-kind", "gray"])]:
        out = tmp_path / f"{name}.png"
        res = runner.invoke(app, ["translate", str(photo), "--model", "pix2pix-edges-photos", "--offline",
                                  "-o", str(out), *extra])
        assert res.exit_code == 0, res.stderr
        with Image.open(out) as im:
            assert im.size == (52, 36) and im.mode == "RGB"
            outs[name] = np.asarray(im)
    # the card declares edges: without --input-kind the photo goes through Canny, not the luminance
    np.testing.assert_array_equal(outs["default"], outs["edges"])
    assert not np.array_equal(outs["default"], outs["gray"])
