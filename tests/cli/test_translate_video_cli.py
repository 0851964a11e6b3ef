"""``imgsynth translate-video`` end to end on tiny exported models and tiny clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.engine.io import read_metadata
from imgsynth.engine.video_io import stream_info, write_mp4

runner = CliRunner()

V2V = dict(label_nc=0, use_instance=False, input_nc=3, output_nc=3, ngf=4, n_downsample=2, n_blocks=2,
           n_frames=3, norm="instance_tracked")
P2P = dict(input_nc=3, output_nc=3, num_downs=5, ngf=4, norm="instance", use_dropout=False)


@pytest.fixture
def video_models(make_export):
    """(video export, its single-image export): the video model names the other as its first-frame model."""
    single = make_export("pix2pix_unet", P2P)
    video = make_export("vid2vid", V2V, task="translate-video")
    cfg = json.loads((video / "config.json").read_text())
    cfg["io"] = {"input": "clusters", "first_frame": "single", "first_frame_model": str(single),
                 "normalization": "frame", "align_corners": True}
    (video / "config.json").write_text(json.dumps(cfg))
    cfg = json.loads((single / "config.json").read_text())
    cfg["io"] = {"input": "clusters"}
    (single / "config.json").write_text(json.dumps(cfg))
    return video, single


def write_clip(folder, n=6, h=18, w=26):
    folder.mkdir()
    rs = np.random.RandomState(0)
    frames = [rs.randint(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(n)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i}.png")  # natural order: frame_2 before frame_10
    return frames


def pngs(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("frame*.png"))]


def test_folder_to_mp4_and_frames_with_resume(video_models, tmp_path):
    video, single = video_models
    write_clip(tmp_path / "clip")
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video),
                              "-o", str(tmp_path / "out.mp4"), "--json", "--fps", "8"])
    assert res.exit_code == 0, res.stderr
    rec = json.loads(res.stdout.splitlines()[0])
    meta = rec["metadata"]
    assert meta["mode"] == "video" and meta["first_frame"] == "single" and meta["frames"] == 6
    assert meta["first_frame_model"] == str(single) and meta["codec"] == "h264"
    assert stream_info(tmp_path / "out.mp4") == {"codec": "h264", "pix_fmt": "yuv420p"}
    assert (tmp_path / "out.mp4.json").exists() and not list(tmp_path.glob(".*"))  # no work folder, no temp file
    # a second run finds the clip done
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video),
                              "-o", str(tmp_path / "out.mp4")])
    assert res.exit_code == 0 and "1 skipped" in res.stderr
    # frames: interrupted after 4 frames, resumed: the same frames as one uninterrupted run
    full = tmp_path / "full"
    assert runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video),
                               "-o", str(full)]).exit_code == 0
    assert read_metadata(full / "frame00003.png")["frame"] == 3
    part = tmp_path / "part"
    assert runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video),
                               "-o", str(part), "--max-frames", "4"]).exit_code == 0
    assert len(pngs(part)) == 4
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video), "-o", str(part),
                              "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["metadata"]["resumed_at_frame"] == 4
    assert all(np.array_equal(a, b) for a, b in zip(pngs(full), pngs(part))) and len(pngs(part)) == 6


def test_per_frame_modes_and_video_file_input(video_models, tmp_path):
    video, single = video_models
    frames = write_clip(tmp_path / "clip")
    base = tmp_path / "base"
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video),
                              "--mode", "per-frame", "-o", str(base)])
    assert res.exit_code == 0, res.stderr
    meta = read_metadata(base / "frame00002.png")
    assert meta["mode"] == "per-frame" and meta["per_frame_model"] == str(single)
    # an image model runs per frame by itself, and matches `translate` on each frame
    img = tmp_path / "img"
    assert runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(single),
                               "-o", str(img)]).exit_code == 0
    assert all(np.array_equal(a, b) for a, b in zip(pngs(base), pngs(img)))
    one = tmp_path / "one.png"
    assert runner.invoke(app, ["translate", str(tmp_path / "clip" / "frame_2.png"), "--weights", str(single),
                               "-o", str(one)]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(one)), pngs(img)[2])
    # a video file in, a GIF out
    write_mp4(iter(frames), tmp_path / "in.mp4", fps=5)
    res = runner.invoke(app, ["translate-video", str(tmp_path / "in.mp4"), "--weights", str(video),
                              "-o", str(tmp_path / "o.gif"), "--json"])
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "o.gif").n_frames == 6
    assert json.loads(res.stdout)["metadata"]["fps"] == pytest.approx(5)


def test_errors_and_interrupt(video_models, tmp_path, monkeypatch):
    video, single = video_models
    write_clip(tmp_path / "clip")
    write_mp4(iter(pngs(tmp_path / "clip")), tmp_path / "in.mp4", fps=5)
    res = runner.invoke(app, ["translate", str(tmp_path / "in.mp4"), "--weights", str(single), "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "imgsynth translate-video" in res.stderr
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(single), "--mode", "video"])
    assert res.exit_code == 2 and "image model" in res.stderr
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video), "-o",
                              str(tmp_path / "o.png")])
    assert res.exit_code == 2 and "error: -o" in res.stderr
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video),
                              "--first-frame", "real", "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--first-frames" in res.stderr
    res = runner.invoke(app, ["translate-video", str(tmp_path / "nope"), "--weights", str(video)])
    assert res.exit_code == 1 and "nope: file not found" in res.stderr
    # a corrupt frame stops the clip there, keeping the frames before it
    (tmp_path / "clip" / "frame_3.png").write_bytes(b"not a png")
    res = runner.invoke(app, ["translate-video", str(tmp_path / "clip"), "--weights", str(video), "-o",
                              str(tmp_path / "c")])
    assert res.exit_code == 1 and "frame_3.png" in res.stderr and len(pngs(tmp_path / "c")) == 3
    assert "Traceback" not in res.stderr
    # Ctrl-C: exit 130, no MP4, the frames written so far stay for the next run
    from imgsynth.pipelines import video as video_pipeline

    calls = {"n": 0}
    real_step = video_pipeline.Vid2VidStream.step

    def step(self, item):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, item)

    monkeypatch.setattr(video_pipeline.Vid2VidStream, "step", step)
    res = runner.invoke(app, ["translate-video", str(tmp_path / "in.mp4"), "--weights", str(video), "-o",
                              str(tmp_path / "i.mp4")])
    assert res.exit_code == 130 and not (tmp_path / "i.mp4").exists()
    assert len(list((tmp_path / ".i.mp4.frames").glob("frame*.png"))) == 2
    monkeypatch.setattr(video_pipeline.Vid2VidStream, "step", real_step)
    res = runner.invoke(app, ["translate-video", str(tmp_path / "in.mp4"), "--weights", str(video), "-o",
                              str(tmp_path / "i.mp4"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["metadata"]["resumed_at_frame"] == 2
    assert not (tmp_path / ".i.mp4.frames").exists()


def test_imaginaire_label_clip_resumes_exactly(make_export, tmp_path):
    video = make_export("imaginaire_vid2vid", task="translate-video")
    lab = tmp_path / "labels"
    lab.mkdir()
    rs = np.random.RandomState(0)
    for i in range(5):
        Image.fromarray(rs.randint(0, 4, (12, 20)).astype(np.uint8), "L").save(lab / f"s_{i}_labelIds.png")
    full, part = tmp_path / "full", tmp_path / "part"
    res = runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "-o", str(full), "--json"])
    assert res.exit_code == 0, res.stderr
    meta = json.loads(res.stdout)["metadata"]
    assert meta["mode"] == "video" and meta["first_frame"] == "network" and meta["size_handling"] == ["pad"]
    assert pngs(full)[0].shape == (12, 20, 3)
    assert runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "-o", str(part),
                               "--max-frames", "3"]).exit_code == 0
    assert runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "-o", str(part)]).exit_code == 0
    assert all(np.array_equal(a, b) for a, b in zip(pngs(full), pngs(part))) and len(pngs(part)) == 5
    res = runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "--first-frame", "zeros"])
    assert res.exit_code == 2 and "first frame itself" in res.stderr
    Image.fromarray(np.full((12, 20), 9, np.uint8), "L").save(lab / "s_5_labelIds.png")
    res = runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "-o", str(full)])
    assert res.exit_code == 1 and "label value(s) [9] out of range" in res.stderr


def test_two_scale_label_model_with_instances_zeros_policy(make_export, tmp_path):
    """The registry's tiny vid2vid (2 scales, foreground branch, instance edges) on label maps."""
    video = make_export("vid2vid", task="translate-video")
    lab = tmp_path / "seq"
    lab.mkdir()
    rs = np.random.RandomState(0)
    for i in range(4):
        Image.fromarray(rs.randint(0, 4, (10, 14)).astype(np.uint8), "L").save(lab / f"c_{i}_gtFine_labelIds.png")
        Image.fromarray(rs.randint(0, 3, (10, 14)).astype(np.uint8), "L").save(lab / f"c_{i}_gtFine_instanceIds.png")
    res = runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "--first-frame", "zeros",
                              "-o", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.stderr
    meta = json.loads(res.stdout)["metadata"]
    assert meta["first_frame"] == "zeros" and meta["frames"] == 4  # instance maps are not frames
    assert pngs(tmp_path / "o")[3].shape == (10, 14, 3)
    res = runner.invoke(app, ["translate-video", str(lab), "--weights", str(video), "-o", str(tmp_path / "p")])
    assert res.exit_code == 0, res.stderr  # no first-frame model in the card: zeros


@pytest.mark.parametrize("args, message", [
    (["--mode", "vid"], "unknown --mode 'vid'; use one of auto, video, per-frame"),
    (["--first-frame", "one"], "unknown --first-frame 'one'; use one of single, zeros, real"),
    (["--input-kind", "labels"], "unknown --input-kind 'labels'"),
    (["--palette", "nope"], "unknown palette 'nope'"),
    (["--model", "telea"], "`imgsynth translate-video` needs a 'translate-video' or 'translate' model"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--device", "gpu"], "unknown device 'gpu'"),
])
def test_usage_errors_before_any_work(tmp_path, args, message):
    res = runner.invoke(app, ["translate-video", str(tmp_path / "missing.mp4"), *args])
    assert res.exit_code == 2 and message in res.stderr and "missing.mp4" not in res.stderr, res.stderr
