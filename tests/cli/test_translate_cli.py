"""``imgsynth translate`` end to end on tiny exported models."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.engine.io import read_metadata

runner = CliRunner()


def save_labels(path, arr, mode="L"):
    Image.fromarray(arr.astype(np.uint8 if mode == "L" else np.int32), mode if mode == "L" else "I").save(path)
    return path


def test_label_folder_with_instances(make_export, tmp_path):
    d = make_export("pix2pixhd_global")
    lab = tmp_path / "labels"
    lab.mkdir()
    rs = np.random.RandomState(0)
    for i in range(3):
        save_labels(lab / f"c{i}_gtFine_labelIds.png", rs.randint(0, 4, (20, 28)))
        save_labels(lab / f"c{i}_gtFine_instanceIds.png", rs.randint(0, 3, (20, 28)))
    out = tmp_path / "out"
    res = runner.invoke(app, ["translate", str(lab), "--weights", str(d), "-o", str(out), "--concat"])
    assert res.exit_code == 0, res.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"c{i}_gtFine_labelIds.png" for i in range(3)]
    assert Image.open(out / files[0]).size == (56, 20)
    assert read_metadata(out / files[0])["size_handling"] == "none"


def test_bad_items_reported_and_others_written(make_export, tmp_path):
    d = make_export("pix2pixhd_global")
    lab = tmp_path / "labels"
    lab.mkdir()
    save_labels(lab / "ok.png", np.zeros((8, 8)))
    save_labels(lab / "ok_instance.png", np.zeros((8, 8)))
    save_labels(lab / "range.png", np.full((8, 8), 9))
    save_labels(lab / "range_instance.png", np.zeros((8, 8)))
    save_labels(lab / "noinst.png", np.zeros((8, 8)))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(lab / "colour.png")
    res = runner.invoke(app, ["translate", str(lab), "--weights", str(d), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    err = res.stderr
    assert "range.png: label value(s) [9] out of range" in err
    assert "noinst.png: this model needs an instance map" in err
    assert "colour.png: a colour label map needs --palette" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["ok.png"]


def test_photo_models_edges_and_gray(make_export, tmp_path):
    d = make_export("pix2pix_unet")
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (40, 50, 3)).astype(np.uint8)).save(photo)
    for kind in ("image", "edges", "gray"):
        res = runner.invoke(app, ["translate", str(photo), "--weights", str(d), "--input-kind", kind,
                                  "-o", str(tmp_path / f"{kind}.png")])
        assert res.exit_code == 0, res.stderr
        assert Image.open(tmp_path / f"{kind}.png").size == (50, 40)
    res = runner.invoke(app, ["translate", str(photo), "--weights", str(d), "--input-kind", "label"])
    assert res.exit_code == 2 and "takes images" in res.stderr


def test_style_refused_without_encoder(make_export, tmp_path):
    d = make_export("spade")
    lab = save_labels(tmp_path / "l.png", np.zeros((16, 16)))
    res = runner.invoke(app, ["translate", str(lab), "--weights", str(d), "--style", str(lab), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "--style needs a model with a style encoder" in res.stderr


def test_panoptic_model_from_instance_ids(make_export, tmp_path):
    from imgsynth.models.registry import get_model

    d = make_export("panoptic")
    n = get_model("panoptic").tiny["label_nc"]
    sem = np.zeros((24, 32), np.int32)
    sem[:, 10:20] = 1
    sem[:, 20:] = min(2, n - 1)
    inst = np.where(sem > 0, sem * 1000 + np.where(np.arange(32)[None] < 15, 1, 2), sem)  # two touching items
    Image.fromarray(inst.astype(np.uint16)).save(tmp_path / "m_instanceIds.png")
    res = runner.invoke(app, ["translate", str(tmp_path / "m_instanceIds.png"), "--weights", str(d),
                              "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "o.png").size == (32, 24)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    res = runner.invoke(app, ["translate", str(tmp_path / "rgb.png"), "--weights", str(d), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "panoptic input is an instanceIds map" in res.stderr
