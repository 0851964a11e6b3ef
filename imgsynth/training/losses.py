"""Adversarial losses and regularisers shared by every family.

Each loss takes raw discriminator outputs (logits or critic scores, any shape; every element is
one decision, so PatchGAN maps and multi-scale lists work too) and returns a scalar.

- ``vanilla``: the minimax game of Goodfellow et al. 2014, Eq. 1. D maximises
  log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z))) (saturates early in training).
- ``nonsaturating``: same D loss; G maximises log D(G(z)) instead (Goodfellow et al. 2014, Sec. 3).
- ``lsgan``: least squares with targets a=0, b=c=1 (Mao et al. 2017, Eq. 2), halved as in the paper.
- ``hinge``: D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))] (Lim & Ye 2017; Miyato et al. 2018).
- ``wgan-gp``: critic E[D(G(z))] - E[D(x)] plus a gradient penalty on interpolates
  (Gulrajani et al. 2017, Algorithm 1); the penalty is :func:`gradient_penalty`.

Regularisers: :func:`r1_penalty` (Mescheder et al. 2018, Eq. 9) and :func:`feature_matching`
(Salimans et al. 2016, Sec. 3.1, batch-mean form; Wang et al. 2018 (pix2pixHD) Eq. 4, per-sample form).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from imgsynth.errors import ConfigError

GAN_LOSSES = ("vanilla", "nonsaturating", "lsgan", "hinge", "wgan-gp")

# A discriminator may return one tensor or a list of them (multi-scale discriminators).
Logits = Union[Tensor, Sequence[Tensor]]


def _as_list(x: Logits) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def _mean_over_heads(fn: Callable[[Tensor], Tensor], x: Logits) -> Tensor:
    heads = _as_list(x)
    return sum(fn(h.float()).mean() for h in heads) / len(heads)


def check_gan_loss(kind: str) -> str:
    """Return ``kind`` if it names a known adversarial loss, else raise :class:`ConfigError`."""
    if kind not in GAN_LOSSES:
        raise ConfigError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")
    return kind


def d_loss(kind: str, real: Logits, fake: Logits) -> Tensor:
    """Discriminator (critic) loss to minimise, given its outputs on real and generated images."""
    check_gan_loss(kind)
    if kind in ("vanilla", "nonsaturating"):
        # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
        return _mean_over_heads(lambda r: F.softplus(-r), real) + _mean_over_heads(F.softplus, fake)
    if kind == "lsgan":
        return 0.5 * (
            _mean_over_heads(lambda r: (r - 1.0).square(), real)
            + _mean_over_heads(lambda f: f.square(), fake)
        )
    if kind == "hinge":
        return _mean_over_heads(lambda r: F.relu(1.0 - r), real) + _mean_over_heads(
            lambda f: F.relu(1.0 + f), fake
        )
    # wgan-gp: Wasserstein critic estimate, the penalty is added by the caller
    return _mean_over_heads(lambda f: f, fake) - _mean_over_heads(lambda r: r, real)


def g_loss(kind: str, fake: Logits) -> Tensor:
    """Generator loss to minimise, given the discriminator's outputs on generated images."""
    check_gan_loss(kind)
    if kind == "vanilla":
        # minimise log(1 - sigmoid(f)) = -softplus(f)
        return _mean_over_heads(lambda f: -F.softplus(f), fake)
    if kind == "nonsaturating":
        return _mean_over_heads(lambda f: F.softplus(-f), fake)
    if kind == "lsgan":
        return 0.5 * _mean_over_heads(lambda f: (f - 1.0).square(), fake)
    return _mean_over_heads(lambda f: -f, fake)  # hinge and wgan-gp


def _input_grad(outputs: Logits, inputs: Tensor, scale: float | None) -> Tensor:
    """d(sum of outputs)/d(inputs) with a graph, so that the penalty itself can be differentiated.

    With fp16 autocast a GradScaler ``scale`` multiplies the outputs first (so small gradients do
    not underflow) and is divided out again (PyTorch AMP notes, "Gradient penalty").
    """
    total = sum(h.float().sum() for h in _as_list(outputs))
    if scale is not None:
        total = total * scale
    (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
    if scale is not None:
        grad = grad / scale
    return grad.float()


def r1_penalty(real_out: Logits, real_in: Tensor, scale: float | None = None) -> Tensor:
    """R1: E[||grad_x D(x)||^2] on real images (Mescheder et al. 2018, Eq. 9, without gamma/2).

    ``real_in`` must have ``requires_grad=True`` and ``real_out = D(real_in)``.
    """
    grad = _input_grad(real_out, real_in, scale)
    return grad.square().flatten(1).sum(1).mean()


def gradient_penalty(
    discriminator: Callable[[Tensor], Logits],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    scale: float | None = None,
) -> Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2], x_hat on lines real-fake (Gulrajani 2017, Alg. 1).

    The interpolation weights come from ``generator`` (a CPU generator), so that a run is
    reproducible and resumable. Returned without the lambda weight.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device, real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    grad = _input_grad(discriminator(x_hat), x_hat, scale)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).square().mean()


def feature_matching(
    real_feats: Sequence[Tensor], fake_feats: Sequence[Tensor], mode: str = "mean"
) -> Tensor:
    """Distance between discriminator features of real and generated images.

    ``mode="mean"`` compares batch means, ||E f(x) - E f(G(z))||^2 per layer (Salimans et al. 2016),
    which suits unconditional models where real and fake samples are unrelated. ``mode="paired"``
    compares sample by sample with L1 (pix2pixHD Eq. 4), for translation where fake i belongs to
    real i. Averaged over layers; real features are treated as constants.
    """
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError("feature matching needs the same, non-zero number of real and fake features")
    terms = []
    for r, f in zip(real_feats, fake_feats):
        r, f = r.detach().float(), f.float()
        if mode == "mean":
            terms.append((f.mean(0) - r.mean(0)).square().mean())
        elif mode == "paired":
            terms.append((f - r).abs().mean())
        else:
            raise ValueError(f"feature matching mode must be 'mean' or 'paired', got {mode!r}")
    return sum(terms) / len(terms)
