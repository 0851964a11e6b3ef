"""Temporal consistency of a generated clip: warping error, flicker and TecoGAN's tOF.

All three compare each generated frame O_t with the frame before it, moved by the motion of the
clip. The motion is a *backward* flow f_t (pixel x of frame t shows what frame t-1 shows at
x + f_t(x)) with a validity mask M_t (0 where that point is occluded in frame t-1 or outside it).
It comes from one of:

* the known flow of a synthetic clip (:mod:`imgsynth.training.clips`), exact;
* OpenCV's DIS optical flow (:func:`dis_flow`, ``PRESET_MEDIUM``) on *flow frames*: the real
  (reference) frames when there are any, else the conditioning input frames, never the output
  being judged. M_t is the forward-backward consistency check of Sundaram et al. (ECCV 2010), as
  Ruder et al. and Lai et al. use it: a point is valid when
  ``|f_b(x) + f_f(x + f_b(x))|^2 <= 0.01 (|f_b(x)|^2 + |f_f(x + f_b(x))|^2) + 0.5`` and
  ``x + f_b(x)`` lies inside the frame.

Scores (frames as RGB in [0, 1]):

* **warping error** (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018): the mean
  over t >= 1 of ``sum_x M_t(x) |O_t(x) - W(O_{t-1}, f_t)(x)|^2 / (3 sum_x M_t(x))``, W bilinear
  backward warping (border replicated);
* **flicker**: the mean over t of ``|mean_{M_t}(O_t - W(O_{t-1}, f_t))|`` in grey levels (0-255):
  the part of the change between frames that is a global brightness / colour shift rather than
  motion (per-frame colour jitter shows here, moving texture does not);
* **tOF** (Chu et al., TecoGAN, ACM TOG 2020): the mean over t of the mean absolute difference
  between the Farneback flow of the output pair (O_{t-1}, O_t) and that of the reference pair, on
  grey frames with TecoGAN's parameters (0.5, 3, 15, 3, 5, 1.2, 0); only with a reference, and on
  the whole frame (TecoGAN's evaluation crops a border first).

Lower is better for all three; the real clip scores its own (non-zero) values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # TecoGAN's tOF parameters


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from uint8 frame ``a`` to ``b``: (H, W, 2) float32 with a(x) ~ b(x + flow(x))."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(a), _gray(b), None)


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp ``img`` (H, W, C) float by ``flow`` (H, W, 2): out(x) = img(x + flow(x)), bilinear."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def flow_and_mask(prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow cur -> prev by DIS and its forward-backward validity mask (H, W) bool."""
    back = dis_flow(cur, prev)
    fwd = dis_flow(prev, cur)
    h, w = back.shape[:2]
    fwd_at = warp(fwd, back)  # the forward flow at x + back(x)
    total = back + fwd_at
    lhs = (total**2).sum(-1)
    rhs = 0.01 * ((back**2).sum(-1) + (fwd_at**2).sum(-1)) + 0.5
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    tx, ty = gx + back[..., 0], gy + back[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return back, (lhs <= rhs) & inside


@dataclass
class TemporalScores:
    """Scores of one clip (see the module docstring); ``tof`` is None without a reference."""

    warping_error: float
    flicker: float
    tof: float | None
    frames: int
    valid_fraction: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def motion(flow_frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """DIS backward flow and mask for every consecutive pair of ``flow_frames`` (len - 1 entries)."""
    return [flow_and_mask(flow_frames[t - 1], flow_frames[t]) for t in range(1, len(flow_frames))]


def temporal_scores(
    outputs: Sequence[np.ndarray],
    *,
    flow_frames: Sequence[np.ndarray] | None = None,
    reference: Sequence[np.ndarray] | None = None,
    flows: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TemporalScores:
    """Score a clip of (H, W, 3) uint8 ``outputs``.

    The motion comes from ``flows`` (a (flow (H, W, 2), valid (H, W)) pair per t >= 1, e.g. exact
    or from :func:`motion`), else DIS on ``flow_frames``, else DIS on ``reference``.
    """
    n = len(outputs)
    if n < 2:
        raise ValueError("a clip needs at least two frames")
    if flows is None:
        src = flow_frames if flow_frames is not None else reference
        if src is None:
            raise ValueError("give flows, flow_frames or reference: the output itself is never its own motion")
        flows = motion(src)
    if len(flows) != n - 1:
        raise ValueError(f"{n} frames need {n - 1} flows, got {len(flows)}")
    werr, flick, valid_frac = [], [], []
    for t in range(1, n):
        flow, valid = flows[t - 1]
        valid = valid.astype(bool)
        cur = outputs[t].astype(np.float32) / 255.0
        warped = warp(outputs[t - 1].astype(np.float32) / 255.0, flow)
        diff = cur - warped
        m = valid.sum()
        valid_frac.append(m / valid.size)
        if m == 0:
            continue
        werr.append(float((diff[valid] ** 2).mean()))
        flick.append(float(abs(diff[valid].mean()) * 255.0))
    tof = None
    if reference is not None:
        import cv2

        vals = []
        for t in range(1, n):
            of_out = cv2.calcOpticalFlowFarneback(_gray(outputs[t - 1]), _gray(outputs[t]), None, *FARNEBACK)
            of_ref = cv2.calcOpticalFlowFarneback(_gray(reference[t - 1]), _gray(reference[t]), None, *FARNEBACK)
            vals.append(float(np.abs(of_out - of_ref).mean()))
        tof = float(np.mean(vals))
    return TemporalScores(float(np.mean(werr)) if werr else float("nan"), float(np.mean(flick)) if flick else float("nan"),
                          tof, n, float(np.mean(valid_frac)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255)."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM on luminance (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03)."""
    import cv2

    x, y = _gray(a).astype(np.float64), _gray(b).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())
