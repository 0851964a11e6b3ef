"""The bundled video default on the bundled example clip, offline: an MP4 a browser plays."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.engine.video_io import stream_info

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_default_on_example_clip_writes_h264(tmp_path):
    out = tmp_path / "out.mp4"
    res = runner.invoke(app, ["translate-video", str(ROOT / "examples/video/shapes"), "-o", str(out), "--offline",
                              "--max-frames", "6", "--json"])
    assert res.exit_code == 0, res.stderr
    meta = json.loads(res.stdout)["metadata"]
    assert meta["model"] == "vid2vid-clips-64" and meta["mode"] == "video" and meta["frames"] == 6
    assert meta["first_frame"] == "single" and meta["first_frame_model"] == "pix2pix-clusters-photos"
    assert stream_info(out) == {"codec": "h264", "pix_fmt": "yuv420p"}
