"""Pictures a run leaves behind: sample grids and a loss-curve PNG, drawn with PIL only."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe palette (Okabe & Ito 2008).
_COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
            (86, 180, 233), (240, 228, 66), (0, 0, 0)]


def _save_png(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    im.save(tmp, format="PNG")
    os.replace(tmp, path)


def to_grid(images: torch.Tensor, columns: int = 0, pad: int = 2) -> Image.Image:
    """(N, C, H, W) in [-1, 1] -> one PIL image with the samples in rows of ``columns``."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    if c > 3:  # extra channels (alpha, features) are not shown
        x, c = x[:, :3], 3
    elif c == 2:
        x, c = x[:, :1], 1
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    arr = x.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = arr[i]
    return Image.fromarray(grid[:, :, 0] if c == 1 else grid, "L" if c == 1 else "RGB")


def save_grid(images: torch.Tensor, path: str | Path, columns: int = 0) -> Path:
    """Write a sample grid PNG atomically; returns the path."""
    path = Path(path)
    _save_png(to_grid(images, columns), path)
    return path


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f"{v:.1e}"
    return f"{v:.3g}"


def save_loss_curve(
    history: Sequence[dict[str, float]], path: str | Path, size: tuple[int, int] = (800, 450)
) -> Path | None:
    """Plot every loss in ``history`` (records ``{"step": s, "name": value, ...}``) against step.

    Returns None (and writes nothing) before there are two records.
    """
    if len(history) < 2:
        return None
    names = sorted({k for rec in history for k in rec if k != "step"})
    width, height = size
    left, right, top, bottom = 70, 20, 30, 50
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    steps = [float(rec["step"]) for rec in history]
    values = [rec[k] for rec in history for k in names if k in rec and math.isfinite(rec[k])]
    if not values:
        return None
    # robust y-range: ignore the wildest 1% so one spike does not flatten every curve
    vs = sorted(values)
    lo, hi = vs[int(0.01 * (len(vs) - 1))], vs[int(0.99 * (len(vs) - 1))]
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    margin = 0.05 * (hi - lo)
    lo, hi = lo - margin, hi + margin
    s0, s1 = min(steps), max(steps)
    s1 = s1 if s1 > s0 else s0 + 1

    def xy(step: float, v: float) -> tuple[float, float]:
        x = left + (step - s0) / (s1 - s0) * (width - left - right)
        v = min(max(v, lo), hi)
        y = top + (hi - v) / (hi - lo) * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    for t in _nice_ticks(lo, hi):
        _, y = xy(s0, t)
        draw.line([left, y, width - right, y], fill=(225, 225, 225))
        draw.text((5, y - 6), _fmt(t), fill=(0, 0, 0), font=font)
    for t in _nice_ticks(s0, s1):
        x, _ = xy(t, lo)
        draw.line([x, height - bottom, x, height - bottom + 4], fill=(0, 0, 0))
        draw.text((x - 12, height - bottom + 8), str(int(t)), fill=(0, 0, 0), font=font)
    draw.text(((width - left) // 2 + left - 12, height - 20), "step", fill=(0, 0, 0), font=font)
    for i, name in enumerate(names):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = [xy(float(rec["step"]), rec[name]) for rec in history
               if name in rec and math.isfinite(rec[name])]
        if len(pts) >= 2:
            draw.line(pts, fill=colour, width=2)
        lx = left + 10 + i * 110
        draw.line([lx, top - 14, lx + 20, top - 14], fill=colour, width=3)
        draw.text((lx + 25, top - 20), name, fill=(0, 0, 0), font=font)
    path = Path(path)
    _save_png(im, path)
    return path
