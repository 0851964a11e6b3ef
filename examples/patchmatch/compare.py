"""Fill a hole in a brick texture with PatchMatch and with OpenCV's Telea, and score both.

Usage (from the repository root):
    python examples/patchmatch/compare.py [--seed 0] [--out examples/patchmatch/comparison.png]

Reads brick.png and hole.png (white = hole) beside this script, writes a side-by-side PNG
(original | input with hole | Telea | PatchMatch) and prints PSNR/SSIM of each fill against the
original, over the whole image and over the hole pixels alone. Needs only numpy, opencv, pillow.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
try:
    from imgsynth.models.patchmatch import inpaint_patchmatch
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parents[1]))
    from imgsynth.models.patchmatch import inpaint_patchmatch


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit images, optionally over a pixel mask."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff[where] ** 2 if where is not None else diff**2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
    averaged over channels."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    out = num / den
    return out.mean(axis=2) if out.ndim == 3 else out


def label(panel: np.ndarray, text: str) -> np.ndarray:
    """Write a caption on a dark band at the top of a panel."""
    panel = panel.copy()
    panel[:18] = panel[:18] // 3
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(panel, text, (4, 13), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "comparison.png")
    args = parser.parse_args()

    image = np.array(Image.open(HERE / "brick.png").convert("RGB"))
    hole = np.array(Image.open(HERE / "hole.png").convert("L")) > 127
    print(f"image {image.shape[1]}x{image.shape[0]}, hole {100 * hole.mean():.1f}% of the pixels")

    start = time.perf_counter()
    telea = cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    t_telea = time.perf_counter() - start
    start = time.perf_counter()
    patchmatch = inpaint_patchmatch(image, hole, seed=args.seed)
    t_pm = time.perf_counter() - start

    print(f"{'method':<12}{'PSNR':>8}{'SSIM':>8}{'hole PSNR':>11}{'hole SSIM':>11}{'time':>9}")
    for name, result, seconds in (("Telea", telea, t_telea), ("PatchMatch", patchmatch, t_pm)):
        smap = ssim_map(result, image)
        print(
            f"{name:<12}{psnr(result, image):8.2f}{smap.mean():8.4f}"
            f"{psnr(result, image, hole):11.2f}{smap[hole].mean():11.4f}{seconds:8.2f}s"
        )

    shown = image.copy()
    shown[hole] = (255, 0, 255)
    panels = [
        label(image, "original"),
        label(shown, "input + hole"),
        label(telea, "Telea"),
        label(patchmatch, "PatchMatch"),
    ]
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([part for p in panels for part in (p, gap)][:-1], axis=1)
    Image.fromarray(strip).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
