"""Sampling unconditional (and class-conditional) generators: latents in, images out.

Latents follow the official StyleGAN ``generate.py`` convention for every model:
``z = np.random.RandomState(seed).randn(z_dim)``, drawn on the CPU per seed, so an image depends
only on its seed, never on the batch size or the device. Truncation and style mixing live here,
outside the networks (as in StyleGAN3's ``gen_images.py``), and need a model with a mapping network
(``mapping(z, c, truncation_psi, truncation_cutoff)`` + ``synthesis(ws, noise_mode)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from imgsynth.errors import UsageError
from imgsynth.pipelines.seeds import parse_grid, parse_seeds  # noqa: F401  (torch-free, re-exported)

NOISE_MODES = ("const", "random", "none")


def seed_latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim) float32 latents, one CPU RandomState per seed."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


def class_onehot(n: int, c_dim: int, class_idx: int | None) -> torch.Tensor:
    """(n, c_dim) one-hot labels (or (n, 0) for unconditional models)."""
    c = torch.zeros(n, c_dim)
    if c_dim == 0:
        if class_idx is not None:
            raise UsageError("--class given but this model is unconditional")
        return c
    if class_idx is None:
        raise UsageError(f"this model is class-conditional: pass --class 0..{c_dim - 1}")
    if not 0 <= class_idx < c_dim:
        raise UsageError(f"--class {class_idx} out of range 0..{c_dim - 1}")
    c[:, class_idx] = 1
    return c


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, as generate.py maps ``img * 127.5 + 128``."""
    x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def has_mapping(model: Any) -> bool:
    return hasattr(model, "mapping") and hasattr(model, "synthesis") and hasattr(model, "num_ws")


@dataclass
class Sampler:
    """Turn seeds (or latents) into images with one generator."""

    model: Any
    device: torch.device | None = None
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        p = next(self.model.parameters())
        self.device = self.device or p.device
        self.dtype = self.dtype or p.dtype

    @property
    def z_dim(self) -> int:
        return int(self.model.z_dim)

    @property
    def c_dim(self) -> int:
        return int(getattr(self.model, "c_dim", 0))

    def check_options(self, truncation_psi: float, mix: bool, noise_mode: str) -> None:
        if noise_mode not in NOISE_MODES:
            raise UsageError(f"--noise-mode must be one of {', '.join(NOISE_MODES)}")
        if not has_mapping(self.model):
            if truncation_psi != 1:
                raise UsageError("--trunc needs a model with a mapping network (StyleGAN, StyleGAN2)")
            if mix:
                raise UsageError("style mixing needs a model with a mapping network (StyleGAN, StyleGAN2)")

    @torch.inference_mode()
    def ws(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
           truncation_cutoff: int | None = None) -> torch.Tensor:
        """Mapping network output (N, num_ws, w_dim) for latents ``z``."""
        return self.model.mapping(z.to(self.device, self.dtype), c.to(self.device, self.dtype),
                                  truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    @torch.inference_mode()
    def synthesize_ws(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self.model.synthesis(ws, noise_mode=noise_mode)

    @torch.inference_mode()
    def from_latents(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation_psi: float = 1.0,
                     truncation_cutoff: int | None = None, noise_mode: str = "const",
                     mix_z: torch.Tensor | None = None, mix_layers: Sequence[int] | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in about [-1, 1] (clamped) for latents ``z`` (N, z_dim)."""
        c = c if c is not None else torch.zeros(z.shape[0], self.c_dim)
        if has_mapping(self.model):
            ws = self.ws(z, c, truncation_psi, truncation_cutoff)
            if mix_z is not None:
                mix_ws = self.ws(mix_z, c, truncation_psi, truncation_cutoff)
                layers = list(mix_layers) if mix_layers else list(range(ws.shape[1] // 2, ws.shape[1]))
                bad = [i for i in layers if not 0 <= i < ws.shape[1]]
                if bad:
                    raise UsageError(f"--mix-layers {bad} out of range 0..{ws.shape[1] - 1}")
                ws[:, layers] = mix_ws[:, layers]
            img = self.synthesize_ws(ws, noise_mode)
        else:
            img = self.model(z.to(self.device, self.dtype))
        return img.float().clamp(-1, 1)

    def from_seeds(self, seeds: Sequence[int], *, class_idx: int | None = None, noise_mode: str = "const",
                   mix_seeds: Sequence[int] | None = None, **kw: Any) -> torch.Tensor:
        """Images for ``seeds``; ``noise_mode='random'`` seeds the noise per image too."""
        z = seed_latents(seeds, self.z_dim)
        c = class_onehot(len(seeds), self.c_dim, class_idx)
        mix_z = seed_latents(mix_seeds, self.z_dim) if mix_seeds is not None else None
        if noise_mode != "random":
            return self.from_latents(z, c, noise_mode=noise_mode, mix_z=mix_z, **kw)
        outs = []
        for i, s in enumerate(seeds):  # per-image noise RNG: results do not depend on batching
            torch.manual_seed(s)
            outs.append(self.from_latents(z[i : i + 1], c[i : i + 1], noise_mode=noise_mode,
                                          mix_z=None if mix_z is None else mix_z[i : i + 1], **kw))
        return torch.cat(outs)


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows*H + pads, cols*W + pads, C) grid, row-major, black padding."""
    n, h, w, ch = images.shape
    if n > rows * cols:
        raise UsageError(f"{n} images do not fit a {rows}x{cols} grid")
    grid = np.zeros((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, ch), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[i]
    return grid


