#!/usr/bin/env python
"""Temporal consistency and image quality of video translation on held-out synthetic clips.

Clips: the *test* split of ``data.source = "clips"`` (:mod:`imgsynth.training.clips`: a panning
photo with 1-3 textured shapes moving by whole pixels, so the backward flow and the occlusion mask
are exact) made from ``--photos`` (default ``data/photos/eval``, the photos no model trains on),
``--clips`` clips of ``--frames`` frames at ``--size`` pixels. Every method sees each real frame
through the same path as ``imgsynth translate-video`` (card -> ``load_model`` -> the
:mod:`imgsynth.pipelines.video` runners; the card's input kind derives the conditioning frame from
the real one, e.g. its 8-colour k-means poster).

Rows: ``real`` (the clip itself), ``input`` (the conditioning frames shown as the output: for
``clusters`` a strong image baseline, it already has the right colours, and a flickering one),
``per-frame`` (the video model's own single-image generator on every frame: ``translate-video
--mode per-frame``) and ``video`` (the video model, its card's first-frame policy).

Scores per clip (:mod:`imgsynth.pipelines.temporal`), averaged over clips: warping error with the
exact flow and mask (x 1000), the same with DIS flow on the real frames and the forward-backward
mask, flicker (grey levels), tOF against the real clip, and PSNR (RGB) / SSIM (luminance) against
the real frames (all frames; and frames >= n-1, the ones the video model makes itself).

    bash examples/inpaint/train/get_photos.sh data/photos
    python benchmarks/temporal.py [--video-model vid2vid-clips-64 | --video-weights DIR] [--clips 12] \
        [--frames 16] [--out benchmarks/results/video]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_video(args):
    from imgsynth.engine.loading import load_model

    if args.video_weights:
        return load_model("translate-video", weights=Path(args.video_weights), offline=True)
    return load_model("translate-video", model=args.video_model, offline=True)


def load_single(ident: str):
    from imgsynth.engine.loading import load_model

    p = Path(ident)
    return load_model("translate", weights=p, offline=True) if p.is_dir() else load_model("translate", model=ident, offline=True)


def run_methods(video, single, clip_frames: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    from imgsynth.pipelines.translate import TranslateInput, Translator
    from imgsynth.pipelines.video import PerFrame, Vid2VidStream

    items = [TranslateInput(f"f{i}", image=f) for i, f in enumerate(clip_frames)]
    single_tr = Translator(single.model, dict(single.io))
    per = PerFrame(single_tr)
    policy = video.io.get("first_frame", "zeros")
    vs = Vid2VidStream(video.model, dict(video.io), None, None, None, policy,
                       single_tr if policy == "single" else None,
                       clip_frames[: video.model.n_frames - 1] if policy == "real" else None)
    derive = Translator(single.model, dict(single.io))
    out = {"input": [], "per-frame": [], "video": []}
    for it in items:
        x = derive.encode_image(it)  # the conditioning frame in [-1, 1]
        cond = ((x[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        out["input"].append(np.repeat(cond, 3, 2) if cond.shape[2] == 1 else cond)
        out["per-frame"].append(per.step(it)[0])
        out["video"].append(vs.step(it)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-model", default="vid2vid-clips-64")
    ap.add_argument("--video-weights", default=None, help="an export folder instead of a card")
    ap.add_argument("--single", default=None, help="the per-frame model (default: the video card's first_frame_model)")
    ap.add_argument("--photos", default="data/photos/eval")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/video")
    args = ap.parse_args()

    import torch

    from imgsynth.pipelines.temporal import psnr, ssim, temporal_scores
    from imgsynth.training.clips import SyntheticClips

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    video = load_video(args)
    single = load_single(args.single or video.io["first_frame_model"])
    n_hist = int(video.model.n_frames) - 1
    cfg = SimpleNamespace(derive=video.io.get("input", "clusters"), frames=args.frames, channels=0, path=args.photos,
                          resolution=args.size, split="test")
    ds = SyntheticClips(cfg, seed=0)
    rows: dict[str, list[dict[str, float]]] = {}
    for c in range(args.clips):
        clip = ds.clip(c)
        real = list(clip.frames)
        outs = {"real": real, **run_methods(video, single, real)}
        exact = [(clip.flow[t].transpose(1, 2, 0), clip.valid[t] > 0) for t in range(1, args.frames)]
        from imgsynth.pipelines.temporal import motion

        dis = motion(real)
        for name, frames in outs.items():
            s_exact = temporal_scores(frames, flows=exact, reference=real)
            s_dis = temporal_scores(frames, flows=dis)
            rows.setdefault(name, []).append({
                "warp_exact_x1000": 1000 * s_exact.warping_error,
                "warp_dis_x1000": 1000 * s_dis.warping_error,
                "flicker": s_exact.flicker,
                "tof": s_exact.tof,
                "psnr": float(np.mean([psnr(f, r) for f, r in zip(frames, real)])),
                "ssim": float(np.mean([ssim(f, r) for f, r in zip(frames, real)])),
                "psnr_late": float(np.mean([psnr(f, r) for f, r in zip(frames[n_hist:], real[n_hist:])])),
                "ssim_late": float(np.mean([ssim(f, r) for f, r in zip(frames[n_hist:], real[n_hist:])])),
            })
        print(f"clip {c + 1}/{args.clips}", file=sys.stderr)
    keys = ["warp_exact_x1000", "warp_dis_x1000", "flicker", "tof", "psnr", "ssim", "psnr_late", "ssim_late"]
    summary = {name: {k: float(np.mean([r[k] for r in rs if r[k] == r[k] and r[k] != float("inf")] or [float("nan")]))
                      for k in keys} for name, rs in rows.items()}
    seconds = time.perf_counter() - t0
    info = {
        "video_model": video.model_id, "per_frame_model": single.model_id, "first_frame": video.io.get("first_frame"),
        "clips": args.clips, "frames": args.frames, "size": args.size, "photos": args.photos, "split": "test",
        "cpu": platform.processor() or platform.machine(), "load_average": os.getloadavg(), "seconds": round(seconds, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps({"info": info, "summary": summary, "per_clip": rows}, indent=1))
    names = {"real": "real clip", "input": f"input ({cfg.derive}) as output", "per-frame": f"per-frame: {single.model_id}",
             "video": f"video: {video.model_id}"}
    lines = [
        f"| method | warping error x1000, exact flow | warping error x1000, DIS flow | flicker (grey levels) | tOF | "
        f"PSNR dB | SSIM | PSNR dB, frames >= {n_hist} | SSIM, frames >= {n_hist} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("real", "input", "per-frame", "video"):
        s = summary[name]
        psnr_s = "inf" if name == "real" else f"{s['psnr']:.2f}"
        late = "inf" if name == "real" else f"{s['psnr_late']:.2f}"
        lines.append(f"| {names[name]} | {s['warp_exact_x1000']:.3f} | {s['warp_dis_x1000']:.3f} | {s['flicker']:.3f} | "
                     f"{s['tof']:.4f} | {psnr_s} | {s['ssim']:.4f} | {late} | {s['ssim_late']:.4f} |")
    table = "\n".join(lines)
    print(table)
    Path(str(out) + ".table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
