"""Synthetic moving-object clips with exact optical flow and occlusion (``data.source = "clips"``).

A clip is ``data.frames`` frames of ``data.resolution`` x ``data.resolution`` pixels: a camera
panning over one photo (an integer number of pixels per frame in x and y) and 1-3 shapes (ellipses,
rectangles, triangles) filled with textures cut from other photos, each moving with its own integer
velocity, drawn back to front. The photos come from ``data.path`` (a folder; train only on the
whitelisted photos of ``../shared/data/TRAINING-DATA.md``). Because every motion is an integer
translation the flow is exact:

* ``flow[t]`` (2, R, R) is the *backward* flow of frame t in pixels (channel 0 horizontal), the
  vid2vid convention: pixel (y, x) of frame t shows what frame t-1 shows at (y + flow_y, x + flow_x).
  Background pixels move by the pan ``(+vx, +vy)``; a pixel of shape k by ``-v_k``. ``flow[0]`` is 0.
* ``valid[t]`` (1, R, R) is 1 where that point is visible in frame t-1 (inside the frame and on the
  same surface: not covered or uncovered by a shape); 0 for occlusions and for frame 0.

The conditioning input ``a`` of each frame is derived from the frame with the very functions that
``imgsynth translate-video --input-kind`` applies (``data.derive``: ``clusters``, ``edges`` or
``gray``; see :mod:`imgsynth.pipelines.translate`). Items are a pure function of
``(seed, epoch, index)``; the ``test`` split draws from another seed stream, so held-out clips
differ from the training ones (the photo folder should differ too: give the held-out photos).

Items: ``{"a": (T, Ca, R, R), "b": (T, 3, R, R) in [-1, 1], "flow": (T, 2, R, R), "valid": (T, 1, R, R)}``
(kind ``clips``); with ``data.frames = 1`` single frames ``{"a": (Ca, R, R), "b": (3, R, R)}``
(kind ``paired``), for training the per-frame image generator on the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from imgsynth.errors import ConfigError

SPLIT_SEEDS = {"train": 0x51A0, "test": 0x7E57}
DERIVE = ("clusters", "edges", "gray")
MAX_PAN = 2  # background pixels per frame, each axis
MAX_SPEED = 3  # shape pixels per frame, each axis
CLIPS_PER_EPOCH = 2048


@dataclass
class Clip:
    """One rendered clip: frames (T, R, R, 3) uint8, layer ids (T, R, R), flow (T, 2, R, R), valid (T, R, R)."""

    frames: np.ndarray
    layers: np.ndarray
    flow: np.ndarray
    valid: np.ndarray


def _shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    import cv2

    m = np.zeros((size, size), np.uint8)
    kind = int(rng.integers(0, 3))
    c = size // 2
    if kind == 0:
        axes = (int(rng.integers(size // 4, size // 2)), int(rng.integers(size // 4, size // 2)))
        cv2.ellipse(m, (c, c), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        h, w = int(rng.integers(size // 2, size)), int(rng.integers(size // 2, size))
        m[(size - h) // 2 : (size + h) // 2, (size - w) // 2 : (size + w) // 2] = 1
    else:
        pts = rng.integers(0, size, (3, 2)).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
        if m.sum() < size:  # degenerate triangle: a disc instead
            cv2.circle(m, (c, c), size // 3, 1, -1)
    return m.astype(bool)


def render_clip(photos: list[np.ndarray], rng: np.random.Generator, size: int, frames: int) -> Clip:
    """Render one clip from ``photos`` ((h, w, 3) uint8, each at least ``size + 2 * MAX_PAN * frames``)."""
    T, R = frames, size
    bg = photos[int(rng.integers(len(photos)))]
    v = rng.integers(-MAX_PAN, MAX_PAN + 1, 2)  # (vx, vy)
    span = np.abs(v) * (T - 1)
    h, w = bg.shape[:2]
    x0 = int(rng.integers(0, w - R - span[0] + 1)) + (span[0] if v[0] < 0 else 0)
    y0 = int(rng.integers(0, h - R - span[1] + 1)) + (span[1] if v[1] < 0 else 0)
    shapes = []
    for k in range(int(rng.integers(1, 4))):
        s = int(rng.integers(R // 5, R // 2 + 1))
        mask = _shape_mask(rng, s)
        src = photos[int(rng.integers(len(photos)))]
        ty, tx = int(rng.integers(0, src.shape[0] - s + 1)), int(rng.integers(0, src.shape[1] - s + 1))
        tex = src[ty : ty + s, tx : tx + s]
        vel = rng.integers(-MAX_SPEED, MAX_SPEED + 1, 2)
        pos = rng.integers(-s // 2, R - s // 2, 2)  # top-left (x, y) in frame 0; may start partly outside
        shapes.append((mask, tex, vel, pos, s))
    out = np.zeros((T, R, R, 3), np.uint8)
    layers = np.zeros((T, R, R), np.int32)
    for t in range(T):
        cx, cy = x0 + int(v[0]) * t, y0 + int(v[1]) * t
        out[t] = bg[cy : cy + R, cx : cx + R]
        for k, (mask, tex, vel, pos, s) in enumerate(shapes, start=1):
            px, py = int(pos[0] + vel[0] * t), int(pos[1] + vel[1] * t)
            ys, xs = slice(max(py, 0), min(py + s, R)), slice(max(px, 0), min(px + s, R))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            m = mask[ys.start - py : ys.stop - py, xs.start - px : xs.stop - px]
            out[t, ys, xs][m] = tex[ys.start - py : ys.stop - py, xs.start - px : xs.stop - px][m]
            layers[t, ys, xs][m] = k
    flow = np.zeros((T, 2, R, R), np.float32)
    valid = np.zeros((T, R, R), np.float32)
    yy, xx = np.mgrid[0:R, 0:R]
    moves = np.array([[v[0], v[1]]] + [[-s[2][0], -s[2][1]] for s in shapes], np.float32)
    for t in range(1, T):
        f = moves[layers[t]]  # (R, R, 2)
        flow[t] = f.transpose(2, 0, 1)
        sx, sy = xx + f[..., 0].astype(int), yy + f[..., 1].astype(int)
        inside = (sx >= 0) & (sx < R) & (sy >= 0) & (sy < R)
        same = np.zeros_like(inside)
        same[inside] = layers[t - 1][sy[inside], sx[inside]] == layers[t][inside]
        valid[t] = same.astype(np.float32)
    return Clip(out, layers, flow, valid)


def load_photos(root: str | Path, short_side: int) -> list[np.ndarray]:
    """Every photo under ``root`` as RGB uint8, resized so its short side is ``short_side``."""
    from PIL import Image

    from imgsynth.training.data import list_images

    out = []
    for p in list_images(root):
        with Image.open(p) as im:
            im = im.convert("RGB")
            scale = short_side / min(im.size)
            im = im.resize((max(short_side, round(im.size[0] * scale)), max(short_side, round(im.size[1] * scale))),
                           Image.Resampling.LANCZOS)
            out.append(np.asarray(im).copy())
    return out


def derive_input(kind: str):
    """The per-frame conditioning function of ``kind`` (the translate pipeline's own)."""
    from imgsynth.pipelines.translate import canny_edges, colour_clusters, to_gray

    return {"clusters": colour_clusters, "edges": canny_edges, "gray": to_gray}[kind]


class SyntheticClips(Dataset):
    """``data.source = "clips"``: see the module docstring."""

    def __init__(self, cfg: Any, seed: int = 0) -> None:
        if cfg.derive not in DERIVE:
            raise ConfigError(f"data.derive must be one of {', '.join(DERIVE)}, got {cfg.derive!r}")
        if cfg.frames < 1:
            raise ConfigError(f"data.frames must be >= 1, got {cfg.frames}")
        if cfg.channels not in (0, 3):
            raise ConfigError("data.source = 'clips' makes RGB frames: leave data.channels at 0 or set 3")
        root = Path(cfg.path)
        if not root.is_dir():
            raise ConfigError(f"data.path {cfg.path!r} (the photos of data.source = 'clips') is not a folder")
        self.cfg, self.seed = cfg, seed
        self.frames = cfg.frames
        self.photos = load_photos(root, cfg.resolution + 2 * MAX_PAN * cfg.frames + 2 * cfg.resolution // 2)
        if not self.photos:
            raise ConfigError(f"data.path {cfg.path!r} holds no photos for data.source = 'clips'")
        self.derive = derive_input(cfg.derive)
        self.channels_a = 3 if cfg.derive == "clusters" else 1
        self.channels_b = self.channels = 3
        self.kind = "clips" if cfg.frames > 1 else "paired"
        self.length = CLIPS_PER_EPOCH

    def __len__(self) -> int:
        return self.length

    def clip(self, index: int, epoch: int = 0) -> Clip:
        """The clip of ``(index, epoch)``, a pure function of the split, seed, index and epoch."""
        rng = np.random.default_rng([SPLIT_SEEDS[self.cfg.split], self.seed & 0xFFFFFFFF, epoch, index])
        return render_clip(self.photos, rng, self.cfg.resolution, self.frames)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        from imgsynth.training.data import _split_key

        index, epoch = _split_key(key)
        c = self.clip(index, epoch)
        a = np.stack([self.derive(f)[:, :, : self.channels_a] for f in c.frames])
        a_t = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        b_t = torch.from_numpy(c.frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if self.kind == "paired":
            return {"a": a_t[0], "b": b_t[0]}
        return {"a": a_t, "b": b_t, "flow": torch.from_numpy(c.flow), "valid": torch.from_numpy(c.valid)[:, None]}
