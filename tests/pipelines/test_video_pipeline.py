"""The video runners: first-frame policies, resume from written frames, a bounded window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsynth.errors import UsageError
from imgsynth.models.registry import build_model
from imgsynth.pipelines.translate import TranslateInput, Translator
from imgsynth.pipelines.video import PerFrame, Vid2VidStream, is_video_model

V2V = dict(label_nc=0, use_instance=False, input_nc=3, output_nc=3, ngf=4, n_downsample=2, n_blocks=2,
           n_frames=3, norm="instance_tracked")
IO = {"input": "image", "normalization": "frame", "align_corners": True}


def models():
    torch.manual_seed(0)
    v = build_model("vid2vid", V2V).eval()
    p = build_model("pix2pix_unet", dict(input_nc=3, output_nc=3, num_downs=5, ngf=4, norm="instance",
                                         use_dropout=False)).eval()
    return v, p


def clip(n=7, h=18, w=26):
    rs = np.random.RandomState(0)
    return [TranslateInput(f"f{i}", image=rs.randint(0, 256, (h, w, 3)).astype(np.uint8)) for i in range(n)]


def test_policies_first_frames():
    v, p = models()
    items = clip()
    single = Translator(p, {"input": "image"})
    s = Vid2VidStream(v, IO, first_frame="single", first_model=single)
    outs = [s.step(it)[0] for it in items]
    assert all(o.shape == (18, 26, 3) for o in outs)
    # frames 0..n-2 come from the single-image generator, the rest from the video model
    assert np.array_equal(outs[0], single.translate_one(items[0])[0])
    assert np.array_equal(outs[1], single.translate_one(items[1])[0])
    assert not np.array_equal(outs[2], single.translate_one(items[2])[0])
    real = [np.full((18, 26, 3), 7, np.uint8), np.full((18, 26, 3), 9, np.uint8)]
    r = Vid2VidStream(v, IO, first_frame="real", real_frames=real)
    assert [r.step(it)[0][0, 0, 0] for it in items[:2]] == [7, 9]
    z = Vid2VidStream(v, IO, first_frame="zeros")
    first = z.step(items[0])[0]
    # zeros: frame 0 is the hallucinated image of a window padded with frame 0
    x = z.enc.encode_image(z.enc._prepare_size(items[0])[0])
    with torch.no_grad():
        from imgsynth.models.vid2vid import frame_statistics

        with frame_statistics(v):
            raw = v(torch.cat([x] * 3, 1), v.zero_history(1, *x.shape[-2:]), use_raw_only=True,
                    align_corners=True).raw
    assert np.array_equal(first, ((raw[0, :, :18, :26].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    assert z.metadata()["first_frame"] == "zeros" and "first_frame_note" in z.metadata()


def test_resume_from_written_frames_is_exact_and_window_bounded():
    v, p = models()
    items = clip(6)
    s = Vid2VidStream(v, IO, first_frame="single", first_model=Translator(p, {}))
    outs = [s.step(it)[0] for it in items]
    assert len(s.inputs) == 3 and len(s.outputs) == 2  # memory: the window, not the clip
    for start in (1, 4):
        r = Vid2VidStream(v, IO, first_frame="single", first_model=Translator(p, {}))
        lo = max(0, start - r.window)
        r.prime(items[lo:start], outs[lo:start], start)
        again = [r.step(it)[0] for it in items[start:]]
        assert all(np.array_equal(a, b) for a, b in zip(outs[start:], again)), start


def test_errors_and_per_frame():
    v, p = models()
    assert is_video_model(v) and not is_video_model(p)
    with pytest.raises(UsageError, match="single-image generator"):
        Vid2VidStream(v, IO, first_frame="single")
    with pytest.raises(UsageError, match="2 real frame"):
        Vid2VidStream(v, IO, first_frame="real", real_frames=[np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(UsageError, match="--first-frame must be"):
        Vid2VidStream(v, IO, first_frame="noise")
    t = Translator(p, {})
    pf = PerFrame(t)
    item = clip(1)[0]
    assert np.array_equal(pf.step(item)[0], t.translate_one(item)[0]) and pf.metadata() == {"mode": "per-frame"}


def test_single_image_hallucination_pads_to_its_generators_multiple():
    from imgsynth.pipelines.translate import size_multiple

    first = dict(input_nc=3, output_nc=3, num_downs=5, ngf=4, norm="instance", use_dropout=True)
    v = build_model("vid2vid", {**V2V, "hallucination": "first_frame", "first_frame_arch": "pix2pix_unet",
                                "first_frame_config": first, "flow_search": 1, "search_window": 3}).eval()
    assert size_multiple(v) == 32 and size_multiple(build_model("vid2vid", V2V)) == 4
    single = Translator(v.first_frame, {"input": "image"})
    s = Vid2VidStream(v, IO, first_frame="single", first_model=single)
    outs = [s.step(it)[0] for it in clip(4)]  # 18 x 26 frames: padded to 32 x 32 inside, cropped back
    assert all(o.shape == (18, 26, 3) for o in outs)
    assert not np.array_equal(outs[3], single.translate_one(clip(4)[3])[0])
