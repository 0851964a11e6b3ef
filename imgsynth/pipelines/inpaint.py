"""Inpainting as arrays in, arrays out: classical methods and networks behind one call.

``Inpainter(method)(images, holes)`` takes RGB uint8 arrays (H, W, 3) and boolean hole masks
(H, W) (True = fill) and returns RGB uint8 arrays of the same sizes, in which every known pixel is
exactly the input pixel (the fill is composited into the hole only).

Methods: ``"telea"`` (Telea 2004, fast marching) and ``"ns"`` (Bertalmio et al. 2001,
Navier-Stokes) through OpenCV, ``"patchmatch"`` (Barnes et al. 2009, ``models.patchmatch``), or a
partial-convolution network (``models.pconv``) given as a module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from imgsynth.errors import InputError, UsageError

if TYPE_CHECKING:
    import torch

CLASSICAL = ("telea", "ns", "patchmatch")
STRATEGIES = ("pad", "resize")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def grow_hole(hole: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate a boolean hole mask by ``pixels`` (a disc), for ``--dilate``."""
    if pixels <= 0:
        return hole
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(hole.astype(np.uint8), k).astype(bool)


def check_hole(hole: np.ndarray, name: str) -> None:
    """Refuse masks with nothing to fill or nothing to fill from."""
    n = int(hole.sum())
    if n == 0:
        raise InputError(f"{name}: the mask has no hole (all black); white (>= 128) marks pixels to fill, or use --invert-mask")
    if n == hole.size:
        raise InputError(f"{name}: the mask covers the whole image (all white); nothing is left to fill from")


def composite(image: np.ndarray, fill: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Known pixels from ``image``, hole pixels from ``fill``."""
    return np.where(hole[..., None], fill, image).astype(np.uint8)


@dataclass
class Inpainter:
    """Fill holes with ``method``: a classical method name or a PConv network (nn.Module).

    ``strategy`` (networks only): ``pad`` reflect-pads to the network's multiple and crops back;
    ``resize`` runs at ``resolution`` (the card's training size) and resizes the fill back.
    ``normalization``: how the network expects pixels: ``imagenet`` ((x - mean) / std, naoto0804
    and the paper's VGG-based training) or ``tanh`` ([-1, 1], mmagic's PConv).
    """

    method: Any
    strategy: str = "pad"
    radius: int = 3
    seed: int = 0
    resolution: int = 256
    normalization: str = "imagenet"
    device: "torch.device | None" = None
    dtype: "torch.dtype | None" = None
    progress: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.method, str) and self.method not in CLASSICAL:
            raise UsageError(f"unknown inpainting method {self.method!r}; use {', '.join(CLASSICAL)} or a network")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown --strategy {self.strategy!r}; use {', '.join(STRATEGIES)}")

    def __call__(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(images) != len(holes):
            raise ValueError("images and holes differ in number")
        for img, hole in zip(images, holes):
            if img.shape[:2] != hole.shape:
                raise ValueError(f"image {img.shape[:2]} and hole {hole.shape} differ in size")
        if isinstance(self.method, str):
            fills = [self._classical(img, hole) for img, hole in zip(images, holes)]
        else:
            fills = self._network(images, holes)
        return [composite(img, fill, hole) for img, fill, hole in zip(images, fills, holes)]

    def _classical(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        if self.method == "patchmatch":
            from imgsynth.models.patchmatch import inpaint_patchmatch

            return inpaint_patchmatch(image, hole, seed=self.seed, progress=self.progress)
        import cv2

        flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
        bgr = np.ascontiguousarray(image[..., ::-1])
        out = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, float(self.radius), flag)
        return out[..., ::-1]

    def _network(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        # Same-size items run as one batch; others one by one.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape[:2], []).append(i)
        out: list[np.ndarray | None] = [None] * len(images)
        for idx in groups.values():
            fills = self._network_batch([images[i] for i in idx], [holes[i] for i in idx])
            for i, f in zip(idx, fills):
                out[i] = f
        return out  # type: ignore[return-value]

    def _network_batch(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        net = self.method
        param = next(net.parameters())
        device = self.device or param.device
        dtype = self.dtype or param.dtype
        h, w = images[0].shape[:2]
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        valid = torch.from_numpy(~np.stack(holes)).unsqueeze(1).float()
        multiple = 2 ** int(getattr(net, "layer_size", 0))
        if self.strategy == "resize":
            size = (self.resolution, self.resolution)
            x_in = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            m_in = (F.interpolate(valid, size=size, mode="area") >= 0.999).float()
        else:
            ph, pw = (-h) % multiple, (-w) % multiple
            x_in = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph < h and pw < w) else F.pad(x, (0, pw, 0, ph), mode="replicate")
            m_in = F.pad(valid, (0, pw, 0, ph), value=1.0)
        if self.normalization == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        elif self.normalization == "tanh":
            mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5)
        else:
            raise UsageError(f"unknown normalization {self.normalization!r} on the card (imagenet or tanh)")
        xn = (x_in - mean) / std
        mask3 = m_in.expand(-1, 3, -1, -1).contiguous()
        with torch.inference_mode():
            y, _ = net((xn * mask3).to(device, dtype), mask3.to(device, dtype))
        y = y.float().cpu() * std + mean
        if self.strategy == "resize":
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        else:
            y = y[:, :, :h, :w]
        y = (y.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return list(y)
