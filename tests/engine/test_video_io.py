"""Video input and output: natural order, video files, H.264 MP4, GIF, the frame sink."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsynth.engine import video_io
from imgsynth.errors import InputError, OutputError, UsageError


def frames(n=5, h=20, w=30, seed=0):
    rs = np.random.RandomState(seed)
    return [rs.randint(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(n)]


def test_folder_and_glob_in_natural_order(tmp_path):
    for name in ("f10.png", "f2.png", "f1.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    src = video_io.open_frames(str(tmp_path))
    assert [i.stem for i in src.items] == ["f1", "f2", "f10"] and not src.is_video
    src = video_io.open_frames(str(tmp_path / "f*.png"))
    assert [i.stem for i in src.items] == ["f1", "f2", "f10"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames"):
        video_io.open_frames(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="file not found"):
        video_io.open_frames(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="matches no image"):
        video_io.open_frames(str(tmp_path / "*.jpg"))


def test_mp4_is_h264_yuv420p_and_reads_back(tmp_path):
    clip = frames(6, 21, 31)  # odd sides: padded by one row and column
    out = tmp_path / "c.mp4"
    info = video_io.write_mp4(iter(clip), out, fps=12)
    assert info["padded_to_even"] and video_io.stream_info(out) == {"codec": "h264", "pix_fmt": "yuv420p"}
    count, fps = video_io.probe_video(out)
    assert count == 6 and fps == pytest.approx(12)
    back = list(video_io.iter_video(out))
    assert len(back) == 6 and back[0].shape == (22, 32, 3)
    assert list(video_io.iter_video(out, start=4))[0].shape == (22, 32, 3) and len(list(video_io.iter_video(out, 4))) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["c.mp4"]  # no temp file left
    assert video_io.is_video_file(out) and not video_io.is_video_file(tmp_path / "x.png")


def test_gif_round_trip(tmp_path):
    out = tmp_path / "c.gif"
    video_io.write_gif(frames(4), out, fps=10)
    assert Image.open(out).n_frames == 4 and video_io.is_video_file(out)
    assert len(list(video_io.iter_video(out))) == 4
    assert video_io.probe_video(out) == (4, pytest.approx(10))


def test_sink_folder_and_container(tmp_path):
    with pytest.raises(UsageError):
        video_io.FrameSink(str(tmp_path / "x.png"), fps=24)
    with pytest.raises(UsageError):
        video_io.FrameSink(str(tmp_path / "x.avi"), fps=24)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        video_io.FrameSink(str(tmp_path / "file"), fps=24)
    with pytest.raises(OutputError, match="overwrite an input"):
        video_io.FrameSink(str(tmp_path / "in.mp4"), fps=24, inputs=[str(tmp_path / "in.mp4")])
    sink = video_io.FrameSink(str(tmp_path / "o.mp4"), fps=24)
    assert sink.done() == 0
    for i, f in enumerate(frames(3)):
        sink.write(i, f, {"frame": i})
    assert sink.done() == 3 and np.array_equal(sink.read(1), frames(3)[1])
    info = sink.finish(3, {"model": "m"})
    assert info["frames"] == 3 and not sink.folder.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "o.mp4", "o.mp4.json"]
    assert video_io.FrameSink(str(tmp_path / "o.mp4"), fps=24).already_complete
    assert not video_io.FrameSink(str(tmp_path / "o.mp4"), fps=24, overwrite=True).already_complete
