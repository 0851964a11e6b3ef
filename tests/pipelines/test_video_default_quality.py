"""The bundled video default is steadier than its own per-frame baseline, at no cost in image quality.

On the bundled example clip (examples/video/shapes: photos no bundled model trained on, with the
exact backward flow and occlusion mask in shapes_flow.npz), through the library path that
``translate-video`` takes: the default with its card's first-frame policy, against its
``first_frame_model`` frame by frame (``--mode per-frame``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 12


def test_bundled_default_beats_its_per_frame_baseline_on_the_example_clip():
    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.temporal import psnr, temporal_scores
    from imgsynth.pipelines.translate import TranslateInput, Translator
    from imgsynth.pipelines.video import PerFrame, Vid2VidStream

    video = load_model("translate-video", offline=True)
    single = load_model("translate", model=video.io["first_frame_model"], offline=True)
    real = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((ROOT / "examples/video/shapes").glob("*.png"))]
    real = real[:FRAMES]
    exact = np.load(ROOT / "examples/video/shapes_flow.npz")
    flows = [(exact["flow"][t].transpose(1, 2, 0), exact["valid"][t] > 0) for t in range(1, FRAMES)]
    tr = Translator(single.model, dict(single.io))
    per = PerFrame(tr)
    stream = Vid2VidStream(video.model, dict(video.io), first_frame=video.io["first_frame"], first_model=tr)
    items = [TranslateInput(f"f{i}", image=f) for i, f in enumerate(real)]
    outs = {"per-frame": [per.step(it)[0] for it in items], "video": [stream.step(it)[0] for it in items]}
    werr = {k: temporal_scores(v, flows=flows).warping_error for k, v in outs.items()}
    quality = {k: np.mean([psnr(o, r) for o, r in zip(v, real)]) for k, v in outs.items()}
    assert werr["video"] < 0.8 * werr["per-frame"], werr
    assert quality["video"] > quality["per-frame"] - 0.1, quality
