"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data", NeurIPS): a differentiable augmentation of every image the
discriminator sees, real and generated, with a strength ``p`` tuned during training.

Official code: https://github.com/NVlabs/stylegan2-ada-pytorch (``training/augment.py``,
``training/training_loop.py``), NVIDIA Source Code License (non-commercial); this is an
independent implementation from the paper.

The pipeline (App. B of the paper) applies each transformation to each image independently with
probability ``p`` (rotations, which are applied twice, with ``1 - sqrt(1 - p)`` each, so that the
chance of any rotation stays ``p``):

- ``b`` (pixel blitting): x-flip, 90-degree rotations, integer translation (up to 1/8 of the side);
- ``g`` (general geometric): isotropic scaling (log2-normal, sigma 0.2), arbitrary rotation
  (uniform), anisotropic scaling (log2-normal, sigma 0.2), arbitrary rotation;
- ``c`` (colour): brightness (+N(0, 0.2)), contrast (x log2-normal, sigma 0.5), luma flip, hue
  rotation (uniform), saturation (x log2-normal, sigma 1).

The geometric transformations are composed into one 3x3 matrix per image and applied with one
bilinear resampling (reflection padding); the colour ones into one 4x4 matrix on RGB (for grey
images, as in the official code, the matrix is averaged over its rows). Everything is
differentiable with respect to the images, so G's gradient flows through the augmentation
(which is what keeps the augmentations from leaking into the generated images, Sec. 2).

Adjusting ``p`` (Sec. 3): the overfitting heuristic ``r_t = E[sign(D(x_real))]`` is accumulated
over ``interval`` steps; then ``p`` moves by ``sign(r_t - target) * batch * interval / (kimg *
1000)``, so that it could go from 0 to 1 in ``kimg`` thousand real images (paper: target 0.6,
every 4 steps, 500k images). ``p`` stays in [0, 1].

Random numbers come from a CPU ``torch.Generator`` that the caller owns (the training loop's
checkpointed one), always the same number of draws per call, so runs resume exactly.

Deviations from the original: the geometric resampling is a single bilinear ``grid_sample`` with
reflection padding, not the official 2x-oversampled pass with a symmetric wavelet filter (the
integer transformations of ``b`` are exact either way); no fractional translation, cutout or
image-space filtering (the ``bgcfnc`` extras); colour transforms act on the last
``color_channels`` channels only, so conditional discriminators (label maps or input images
concatenated before the image) get the same geometry on their condition and colour changes on
the image alone.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: the pipelines of the paper's Fig. 4 (and their parts), by name
PIPES: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "bg": ("xflip", "rotate90", "xint", "scale", "rotate", "aniso"),
    "bgc": ("xflip", "rotate90", "xint", "scale", "rotate", "aniso",
            "brightness", "contrast", "lumaflip", "hue", "saturation"),
}

_GEOM = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso")
_COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


def _eye(n: int, k: int) -> Tensor:
    return torch.eye(k, dtype=torch.float64).expand(n, k, k).clone()


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(len(sx), 3)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta: Tensor) -> Tensor:
    m = _eye(len(theta), 3)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(len(tx), 3)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _rotate3d(axis: Tensor, theta: Tensor) -> Tensor:
    """Rotation by ``theta`` about the unit ``axis`` (Rodrigues), as (N, 4, 4) homogeneous matrices."""
    x, y, z = axis
    c, s = torch.cos(theta), torch.sin(theta)
    cc = 1 - c
    m = _eye(len(theta), 4)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c
    return m


class AugmentPipe:
    """The ADA augmentation at probability ``p`` (see the module docstring).

    ``pipe`` names the set of transformations (:data:`PIPES`, default the paper's ``bgc``).
    """

    def __init__(self, pipe: str = "bgc", p: float = 0.0) -> None:
        if pipe not in PIPES:
            raise ValueError(f"unknown augmentation pipe {pipe!r}; known: {', '.join(PIPES)}")
        self.pipe = pipe
        self.enabled = set(PIPES[pipe])
        self.p = float(p)

    # ------------------------------------------------------------ drawing
    def draw(self, n: int, size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Per-image transformation matrices for a batch of ``n`` square ``size`` images.

        Returns ``{"geom": (n, 3, 3) float64, "color": (n, 4, 4) float64}``: ``geom`` maps output
        coordinates to input coordinates (normalised, [-1, 1]); ``color`` acts on homogeneous RGB.
        The same number of numbers is drawn whatever ``p`` and the outcome.
        """
        p = self.p
        on = self.enabled

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, dtype=torch.float64)

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        def chosen(name: str, prob: float) -> Tensor:
            u = rand(n)
            return (u < prob) if name in on else torch.zeros(n, dtype=torch.bool)

        zeros, ones = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
        g = _eye(n, 3)
        # pixel blitting
        i = torch.floor(rand(n) * 2)
        i = torch.where(chosen("xflip", p), i, zeros)
        g = g @ _scale2d(1 - 2 * i, ones)
        i = torch.floor(rand(n) * 4)
        i = torch.where(chosen("rotate90", p), i, zeros)
        g = g @ _rotate2d(math.pi / 2 * i)
        t = (rand(n, 2) * 2 - 1) * 0.125
        t = torch.where(chosen("xint", p)[:, None], t, torch.zeros_like(t))
        shift = torch.round(t * size) * 2 / size  # whole pixels, in normalised coordinates
        g = g @ _translate2d(shift[:, 0], shift[:, 1])
        # general geometric
        s = torch.exp2(randn(n) * 0.2)
        s = torch.where(chosen("scale", p), s, ones)
        g = g @ _scale2d(1 / s, 1 / s)
        p_rot = 1 - math.sqrt(max(0.0, 1 - p))
        theta = (rand(n) * 2 - 1) * math.pi
        theta = torch.where(chosen("rotate", p_rot), theta, zeros)
        g = g @ _rotate2d(theta)
        s = torch.exp2(randn(n) * 0.2)
        s = torch.where(chosen("aniso", p), s, ones)
        g = g @ _scale2d(1 / s, s)
        theta = (rand(n) * 2 - 1) * math.pi
        theta = torch.where(chosen("rotate", p_rot), theta, zeros)
        g = g @ _rotate2d(theta)

        # colour (applied left to right: the last matrix multiplied on the left acts last)
        c = _eye(n, 4)
        b = randn(n) * 0.2
        b = torch.where(chosen("brightness", p), b, zeros)
        c = _translate3d(b) @ c
        k = torch.exp2(randn(n) * 0.5)
        k = torch.where(chosen("contrast", p), k, ones)
        c = _scale3d(k) @ c
        v = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(3)
        vv = torch.outer(v, v)
        i = torch.floor(rand(n) * 2)
        i = torch.where(chosen("lumaflip", p), i, zeros)
        c = (torch.eye(4, dtype=torch.float64) - 2 * vv * i[:, None, None]) @ c
        theta = (rand(n) * 2 - 1) * math.pi
        theta = torch.where(chosen("hue", p), theta, zeros)
        c = _rotate3d(v[:3], theta) @ c
        s = torch.exp2(randn(n) * 1.0)
        s = torch.where(chosen("saturation", p), s, ones)
        c = (vv + (torch.eye(4, dtype=torch.float64) - vv) * s[:, None, None]) @ c
        return {"geom": g, "color": c}

    # ------------------------------------------------------------ applying
    def apply(self, x: Tensor, params: dict[str, Tensor], color_channels: int | None = None) -> Tensor:
        """``x`` (N, C, H, W) float in [-1, 1] (or a condition + image stack) transformed by ``params``.

        Geometry applies to every channel; colour to the last ``color_channels`` (default: all,
        which must then be 1 or 3; other counts skip the colour step).
        """
        if self.p <= 0:
            return x
        n = x.shape[0]
        if any(name in self.enabled for name in _GEOM):
            theta = params["geom"][:, :2, :].to(x.device, torch.float32)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x.float(), grid.to(x.dtype) if x.dtype != torch.float32 else grid,
                              mode="bilinear", padding_mode="reflection", align_corners=False).to(x.dtype)
        cc = x.shape[1] if color_channels is None else int(color_channels)
        if any(name in self.enabled for name in _COLOR) and cc in (1, 3) and cc <= x.shape[1]:
            m = params["color"].to(x.device, torch.float32)
            head, img = x[:, : x.shape[1] - cc], x[:, x.shape[1] - cc :]
            flat = img.float().reshape(n, cc, -1)
            if cc == 3:
                flat = m[:, :3, :3] @ flat + m[:, :3, 3:]
            else:
                rows = m[:, :3, :].mean(1, keepdim=True)  # (N, 1, 4)
                flat = flat * rows[:, :, :3].sum(2, keepdim=True) + rows[:, :, 3:]
            img = flat.reshape(img.shape).to(x.dtype)
            x = torch.cat([head, img], 1) if head.shape[1] else img
        return x

    def __call__(self, x: Tensor, generator: torch.Generator, color_channels: int | None = None) -> Tensor:
        """Draw and apply in one go (nothing is drawn at ``p = 0``)."""
        if self.p <= 0:
            return x
        return self.apply(x, self.draw(x.shape[0], x.shape[-1], generator), color_channels)


def _translate3d(b: Tensor) -> Tensor:
    m = _eye(len(b), 4)
    m[:, 0, 3], m[:, 1, 3], m[:, 2, 3] = b, b, b
    return m


def _scale3d(k: Tensor) -> Tensor:
    m = _eye(len(k), 4)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = k, k, k
    return m


def _heads(out: Any) -> list[Tensor]:
    """The logit tensors of a discriminator output (a tensor, a list of heads, or lists of features)."""
    if isinstance(out, Tensor):
        return [out]
    heads: list[Tensor] = []
    for item in out:
        heads.append(item[-1] if isinstance(item, (list, tuple)) else item)
    return heads


class AdaptiveP:
    """The ``p`` controller of ADA (Karras et al. 2020, Sec. 3).

    ``observe(real_out)`` after each discriminator step on real images; ``update(batch)`` once per
    training step; every ``interval`` steps ``p`` moves towards keeping ``r_t`` at ``target``.
    ``centre`` is where a real/fake decision flips in D's output (0 for logits; 0.5 for LSGAN's
    0/1 targets).
    """

    def __init__(self, target: float = 0.6, interval: int = 4, kimg: float = 500.0, centre: float = 0.0,
                 p: float = 0.0) -> None:
        self.target, self.interval, self.kimg, self.centre = float(target), int(interval), float(kimg), float(centre)
        self.p = float(p)
        self.sign_sum, self.count, self.steps = 0.0, 0, 0
        self.last_rt = 0.0

    @torch.no_grad()
    def observe(self, real_out: Any) -> None:
        """Accumulate sign(D(x_real) - centre) over every head's outputs."""
        for h in _heads(real_out):
            self.sign_sum += float(torch.sign(h.detach().float() - self.centre).sum())
            self.count += h.numel()

    def update(self, batch_images: int, reduce: Callable[[float, int], tuple[float, int]] | None = None) -> bool:
        """Count one step of ``batch_images`` real images; adjust ``p`` every ``interval`` steps.

        ``reduce`` sums the accumulated (sign sum, count) over processes in data-parallel runs.
        Returns whether ``p`` was adjusted.
        """
        self.steps += 1
        if self.steps % self.interval:
            return False
        total, count = reduce(self.sign_sum, self.count) if reduce is not None else (self.sign_sum, self.count)
        if count == 0:
            return False
        self.last_rt = total / count
        delta = batch_images * self.interval / (self.kimg * 1000)
        direction = (self.last_rt > self.target) - (self.last_rt < self.target)
        self.p = min(1.0, max(0.0, self.p + direction * delta))
        self.sign_sum, self.count = 0.0, 0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "steps": self.steps,
                "last_rt": self.last_rt}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])
        self.sign_sum, self.count = float(state["sign_sum"]), int(state["count"])
        self.steps, self.last_rt = int(state["steps"]), float(state["last_rt"])
