"""Latent walks: key latents in, a sequence of interpolated latents (then images) out.

``lerp`` is straight-line interpolation; ``slerp`` follows the great circle between two latents
(Shoemake 1985; recommended for Gaussian z by White 2016, "Sampling Generative Networks"), falling
back to lerp when the two are (anti)parallel. In ``w`` space (StyleGAN) the keys are mapped first
and the walk runs over ws.
"""

from __future__ import annotations

import torch

from imgsynth.errors import UsageError

METHODS = ("lerp", "slerp")


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(…) a, b and (T,) t -> (T, …) points a + t (b - a)."""
    t = t.view(-1, *([1] * a.dim()))
    return a.unsqueeze(0) + t * (b - a).unsqueeze(0)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation over the last dimension; (…, D) a, b and (T,) t -> (T, …, D)."""
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    bn = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    dot = (an * bn).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    tt = t.view(-1, *([1] * a.dim()))
    safe = so.abs() > 1e-6
    sa = torch.where(safe, torch.sin((1 - tt) * omega) / torch.where(safe, so, torch.ones_like(so)), 1 - tt)
    sb = torch.where(safe, torch.sin(tt * omega) / torch.where(safe, so, torch.ones_like(so)), tt)
    return sa * a.unsqueeze(0) + sb * b.unsqueeze(0)


def walk(keys: torch.Tensor, steps: int, method: str = "lerp", loop: bool = False) -> torch.Tensor:
    """Interpolate between consecutive keys (K, …).

    ``steps`` frames per segment. Without ``loop``: K-1 segments and the last key appended, so
    ``steps*(K-1)+1`` frames ending exactly on the last key. With ``loop``: K segments back to the
    first key, ``steps*K`` frames that repeat seamlessly.
    """
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if steps < 1:
        raise UsageError("--steps must be at least 1")
    k = keys.shape[0]
    if k < 2:
        raise UsageError("an interpolation needs at least two keys (seeds or latent files)")
    fn = lerp if method == "lerp" else slerp
    t = torch.arange(steps, dtype=keys.dtype) / steps
    segs = [fn(keys[i], keys[(i + 1) % k], t) for i in range(k if loop else k - 1)]
    if not loop:
        segs.append(keys[-1:].clone())
    return torch.cat(segs)
