#!/usr/bin/env python
"""Inpainting quality by hole-ratio bin on held-out photos: PSNR, SSIM, L1 and seconds per image.

    bash examples/inpaint/train/get_photos.sh data/photos     # held-out photos in data/photos/eval
    python benchmarks/inpaint_bins.py --photos data/photos/eval [--model pconv-photos-256] [--weights DIR]
        [--methods telea,ns,patchmatch] [--per-bin 2] [--size 256] [--ensemble 1,4]
        [--out benchmarks/results/inpaint.json]

Each photo is centre-cropped to a square and resized to ``--size``; for every bin
(0.01,0.1] ... (0.5,0.6] seeded free-form masks (the training generator's strokes, added until the
hole ratio lands in the bin) are drawn. Metrics are computed on the composited result over the
whole image (known pixels are exact for every method), SSIM on luminance with an 11x11 Gaussian
window (sigma 1.5) as in Wang et al. 2004, PSNR on RGB in [0, 255], L1 in [0, 1] as percent;
``texture`` is the variance of the Laplacian of the result's luminance over the hole divided by that
of the photo (1: as detailed as the photo, near 0: a smooth smear), averaged over the masks.
Networks run as ``imgsynth inpaint`` runs them: with the card's (or export's) ``io.ensemble``
unless ``--ensemble`` lists the self-ensemble sizes to measure (a row each, named ``NAME xN``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BINS = [(0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6)]


def load_photo(path: Path, size: int) -> np.ndarray:
    from imgsynth.engine.io import decode_image

    rgb = decode_image(path.read_bytes(), str(path)).rgb
    h, w = rgb.shape[:2]
    s = min(h, w)
    rgb = rgb[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def binned_mask(size: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """A free-form hole whose ratio lies in (lo, hi]: strokes are added until it does."""
    from imgsynth.training.data import free_form_mask

    for _ in range(1000):
        mask = np.zeros((size, size), bool)
        while mask.mean() <= lo:
            mask |= free_form_mask(size, rng).astype(bool)
        if mask.mean() <= hi:
            return mask
    raise RuntimeError(f"could not draw a mask in ({lo}, {hi}]")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 RGB images on luminance (Wang et al. 2004, K1=0.01, K2=0.03)."""
    ya = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    yb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(ya), blur(yb)
    saa, sbb, sab = blur(ya * ya) - mu_a**2, blur(yb * yb) - mu_b**2, blur(ya * yb) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(m[5:-5, 5:-5].mean())


def texture_ratio(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    """var(Laplacian(result)) / var(Laplacian(photo)) over the hole pixels, on luminance."""
    la = cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[hole]
    lb = cv2.Laplacian(cv2.cvtColor(truth, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[hole]
    return float(la.var() / max(float(lb.var()), 1e-12))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[], help="network card id (repeatable)")
    ap.add_argument("--weights", action="append", default=[], help="export folder (repeatable)")
    ap.add_argument("--methods", default="telea,ns,patchmatch")
    ap.add_argument("--per-bin", type=int, default=2, help="masks per photo and bin")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ensemble", default="", help="self-ensemble sizes for every network, e.g. 1,4 "
                    "(default: each card's io.ensemble)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    import torch

    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.inpaint import Inpainter

    torch.set_num_threads(2)
    methods: dict[str, Inpainter] = {m: Inpainter(m) for m in a.methods.split(",") if m}
    sizes = [int(e) for e in a.ensemble.split(",") if e]
    loaded_nets = [(mid, load_model("inpaint", model=mid)) for mid in a.model]
    loaded_nets += [(Path(w).name, load_model("inpaint", weights=Path(w))) for w in a.weights]
    for name, loaded in loaded_nets:
        for n in sizes or [int(loaded.io.get("ensemble", 1))]:
            methods[name if n == 1 else f"{name} x{n}"] = Inpainter(
                loaded.model, normalization=loaded.io.get("normalization", "imagenet"), ensemble=n)
    photos = sorted(p for p in a.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = np.random.default_rng(a.seed)
    cases = []
    for p in photos:
        img = load_photo(p, a.size)
        for lo, hi in BINS:
            for _ in range(a.per_bin):
                cases.append((p.name, (lo, hi), img, binned_mask(a.size, lo, hi, rng)))
    rows = {}
    for name, inp in methods.items():
        for photo, b, img, hole in cases:
            t0 = time.perf_counter()
            out = inp([img], [hole])[0]
            dt = time.perf_counter() - t0
            r = rows.setdefault((name, b), {"psnr": [], "ssim": [], "l1": [], "texture": [], "s": []})
            r["psnr"].append(psnr(out, img))
            r["ssim"].append(ssim(out, img))
            r["l1"].append(float(np.abs(out.astype(float) - img.astype(float)).mean() / 255 * 100))
            r["texture"].append(texture_ratio(out, img, hole))
            r["s"].append(dt)
    table = [{"method": m, "bin": f"({lo}, {hi}]", **{k: round(float(np.mean(v)), 4) for k, v in r.items()},
              "n": len(r["psnr"])} for (m, (lo, hi)), r in rows.items()]
    print(f"{len(photos)} held-out photos, {a.per_bin} masks per photo and bin, {a.size}x{a.size}\n")
    print("| method | hole ratio | PSNR | SSIM | L1 % | texture | s/image |")
    print("|---|---|---|---|---|---|---|")
    for t in sorted(table, key=lambda t: (t["bin"], t["method"])):
        print(f"| {t['method']} | {t['bin']} | {t['psnr']:.2f} | {t['ssim']:.4f} | {t['l1']:.2f} | {t['texture']:.3f} | {t['s']:.3f} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"photos": [p.name for p in photos], "size": a.size, "per_bin": a.per_bin,
                                     "seed": a.seed, "rows": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
