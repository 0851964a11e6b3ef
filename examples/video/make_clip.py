#!/usr/bin/env python
"""Make examples/video/shapes/: a synthetic clip like the vid2vid default's training clips.

A camera panning over ``examples/inpaint/astronaut.png`` / ``coffee.png`` (scikit-image's
``astronaut``, NASA, public domain; ``coffee``, CC0) with shapes textured from them and from
``examples/patchmatch/brick.png`` (scikit-image ``brick``, CC0) moving by whole pixels
(:func:`imgsynth.training.clips.render_clip`). None of these photos is a training photo of the
bundled models. Writes ``frame_00.png`` ... (the real frames: ``translate-video`` derives each
frame's 8-colour k-means input itself) and ``flow.npz`` (the exact backward flow and validity mask).

    python examples/video/make_clip.py [--frames 24] [--size 64] [--seed 6] [--out examples/video/shapes]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--out", default="examples/video/shapes")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    from imgsynth.training.clips import MAX_PAN, render_clip

    short = args.size + 2 * MAX_PAN * args.frames + args.size
    photos = []
    for name in ("inpaint/astronaut.png", "inpaint/coffee.png", "patchmatch/brick.png"):
        im = Image.open(root / name).convert("RGB")
        s = short / min(im.size)
        photos.append(np.asarray(im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.Resampling.LANCZOS)))
    clip = render_clip(photos, np.random.default_rng(args.seed), args.size, args.frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(clip.frames):
        Image.fromarray(f).save(out / f"frame_{t:02d}.png")
    np.savez_compressed(out.parent / f"{out.name}_flow.npz", flow=clip.flow, valid=clip.valid)
    print(f"{args.frames} frames -> {out}")


if __name__ == "__main__":
    main()
