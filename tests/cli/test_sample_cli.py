"""``imgsynth sample`` / ``interpolate`` end to end on tiny exported models."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.engine.io import read_metadata

runner = CliRunner()


def test_sample_per_seed_files_and_resume(make_export, tmp_path):
    d = make_export("dcgan")
    out = tmp_path / "s"
    res = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "0,3-4", "-o", str(out), "-b", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0003.png", "seed0004.png"]
    meta = read_metadata(out / "seed0003.png")
    assert meta["seed"] == 3 and meta["arch"] == "dcgan"
    assert [json.loads(x)["status"] for x in res.stdout.splitlines()] == ["ok"] * 3
    one = tmp_path / "one"
    runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "3", "-o", str(one), "-b", "1"])
    assert np.array_equal(np.asarray(Image.open(one / "seed0003.png")), np.asarray(Image.open(out / "seed0003.png")))
    again = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "0,3-4", "-o", str(out)])
    assert "0 written, 3 skipped" in again.stderr


def test_bf16_without_native_support_is_a_usage_error(make_export, tmp_path, native_precision):
    native_precision(bf16=False)
    d = make_export("dcgan")
    res = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "0", "-o", str(tmp_path / "s"),
                              "--precision", "bf16", "--device", "cpu"])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: --precision bf16 is not supported natively")
    assert "use --precision fp32" in res.stderr and not (tmp_path / "s").exists()
    native_precision(bf16=True)
    res = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "0", "-o", str(tmp_path / "s"),
                              "--precision", "bf16", "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "s" / "seed0000.png").exists()


def test_sample_grid(make_export, tmp_path):
    d = make_export("dcgan")
    res = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "0-5", "--grid", "2x3", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "g.png").size == (3 * 32 + 4, 2 * 32 + 2)
    res = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "0-9", "--grid", "2x3", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "do not fit" in res.stderr


@pytest.mark.parametrize("args,pattern", [
    (["--trunc", "0.5"], "mapping network"),
    (["--class", "1"], "unconditional"),
    (["--noise-mode", "loud"], "--noise-mode"),
])
def test_sample_option_errors(make_export, tmp_path, args, pattern):
    res = runner.invoke(app, ["sample", "--weights", str(make_export("dcgan")), "--seeds", "1", "-o", str(tmp_path / "x"), *args])
    assert res.exit_code == 2 and pattern in res.stderr


def test_sample_without_model_or_default(tmp_path):
    res = runner.invoke(app, ["sample", "--weights", str(tmp_path), "--seeds", "1"])
    assert res.exit_code == 1 and "no config.json" in res.stderr


def test_interpolate_gif_mp4_frames_grid(make_export, tmp_path):
    d = str(make_export("dcgan"))
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2,3", "--steps", "4", "-o", str(tmp_path / "w.gif")])
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "w.gif").n_frames == 9
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2", "--steps", "6", "--loop",
                              "-o", str(tmp_path / "w.mp4"), "--method", "lerp"])
    assert res.exit_code == 0, res.stderr
    cap = cv2.VideoCapture(str(tmp_path / "w.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 32
    # browser-playable: H.264 in yuv420p, not MPEG-4 Part 2
    from imgsynth.engine.video_io import stream_info

    assert stream_info(tmp_path / "w.mp4") == {"codec": "h264", "pix_fmt": "yuv420p"}
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2", "--steps", "2", "-o", str(tmp_path / "fr")])
    assert sorted(p.name for p in (tmp_path / "fr").iterdir()) == ["frame0000.png", "frame0001.png", "frame0002.png"]
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2,3", "--steps", "3", "--grid",
                              "-o", str(tmp_path / "fig.png")])
    assert res.exit_code == 0 and Image.open(tmp_path / "fig.png").size == (4 * 32 + 6, 2 * 32 + 2)


def test_interpolate_latent_files_and_errors(make_export, tmp_path):
    d = str(make_export("dcgan"))
    np.save(tmp_path / "k.npy", np.random.RandomState(0).randn(2, 8).astype(np.float32))
    res = runner.invoke(app, ["interpolate", str(tmp_path / "k.npy"), "--weights", d, "--steps", "2", "-o", str(tmp_path / "a.gif")])
    assert res.exit_code == 0, res.stderr
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    res = runner.invoke(app, ["interpolate", str(tmp_path / "bad.npy"), "--weights", d, "-o", str(tmp_path / "b.gif")])
    assert res.exit_code == 1 and "bad.npy: latents must have shape" in res.stderr
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2", "--space", "w", "-o", str(tmp_path / "c.gif")])
    assert res.exit_code == 2 and "--space w needs" in res.stderr
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2", "-o", str(tmp_path / "c.avi")])
    assert res.exit_code == 2


def test_interpolate_w_space_stylegan2(make_export, tmp_path):
    from imgsynth.models.registry import get_model

    tiny = get_model("stylegan2").tiny
    args = ["--class", "0"] if tiny.get("c_dim", 0) else []
    d = str(make_export("stylegan2"))
    res = runner.invoke(app, ["interpolate", "--weights", d, "--seeds", "1,2", "--space", "w", "--steps", "3",
                              "--method", "lerp", "-o", str(tmp_path / "w.gif"), *args])
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "w.gif").n_frames == 4


def _bundled_sample_cards() -> list[str]:
    from imgsynth.engine.cards import load_cards

    return sorted(c.id for c in load_cards().values() if c.task == "sample" and c.source.kind == "bundled")


@pytest.mark.parametrize("card", _bundled_sample_cards())
def test_every_bundled_sampler_works_offline(card, tmp_path, monkeypatch):
    """The issue's done-when: sample a grid and walk between seeds with each bundled default, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(app, ["sample", "--model", card, "--seeds", "0-3", "--grid", "2x2", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert 64 <= grid.shape[0] == grid.shape[1] < 80 and grid.std() > 10  # 2x2 garments of 32x32 (+ gaps), not blank
    res = runner.invoke(app, ["interpolate", "--model", card, "--seeds", "1,2,3", "--steps", "5", "-o", str(tmp_path / "w.gif")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "w.gif").n_frames == 11  # 2 segments of 5 steps + the last seed
