#!/usr/bin/env python
"""Make examples/video/shapes_compare.gif: input | per-frame | vid2vid | real, side by side.

Runs the bundled video default and its own per-frame generator on examples/video/shapes/ through
``imgsynth translate-video`` (``--mode per-frame`` for the baseline), then tiles the clips with the
conditioning input (each frame's 8-colour k-means poster) and the real frames, enlarged 2x (nearest).

    python examples/video/compare.py [--model vid2vid-clips-64] [--out examples/video/shapes_compare.gif]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(ROOT / "examples/video/shapes"))
    ap.add_argument("--model", default=None, help="card id (default: the translate-video default)")
    ap.add_argument("--weights", default=None, help="an export folder instead of a card")
    ap.add_argument("--out", default=str(ROOT / "examples/video/shapes_compare.gif"))
    ap.add_argument("--fps", type=float, default=8.0)
    args = ap.parse_args()
    from imgsynth.engine.video_io import write_gif
    from imgsynth.pipelines.translate import colour_clusters

    pick = ["--weights", args.weights] if args.weights else (["--model", args.model] if args.model else [])
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for mode in ("per-frame", "video"):
            d = Path(tmp) / mode
            cmd = [sys.executable, "-m", "imgsynth", "translate-video", args.clip, *pick, "--mode", mode,
                   "--offline", "-q", "-o", str(d)]
            subprocess.run(cmd, check=True, cwd=ROOT)
            outs[mode] = frames(d)
    real = frames(Path(args.clip))
    cond = [colour_clusters(f) for f in real]
    tiles = []
    for t in range(len(real)):
        row = np.concatenate([cond[t], outs["per-frame"][t], outs["video"][t], real[t]], 1)
        tiles.append(np.kron(row, np.ones((2, 2, 1), np.uint8)))
    write_gif(iter(tiles), Path(args.out), fps=args.fps)
    print(f"{len(tiles)} frames -> {args.out}")


if __name__ == "__main__":
    main()
