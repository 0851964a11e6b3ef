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

Inpainting (Liu et al. 2018, "Image Inpainting for Irregular Holes Using Partial Convolutions",
Eq. 1-7): :func:`inpainting_losses` returns the weighted terms L_valid, L_hole, L_perceptual,
L_style_out, L_style_comp and L_tv; the perceptual and style terms need ImageNet VGG-16 weights
(:class:`VGG16Features`, loaded from a local file). :func:`ssim_loss` is a structure term that
needs no pretrained weights (Wang et al. 2004).

Translation (Wang et al. 2018, pix2pixHD, Sec. 3.2; Park et al. 2019, SPADE, Sec. 4):
:func:`vgg_feature_loss` is their perceptual loss, an L1 distance between VGG-19 features
(:class:`VGG19Features`, also from a local file) at relu1_1 .. relu5_1 weighted 1/32 .. 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.errors import ConfigError, WeightsError

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


# ---------------------------------------------------------------- inpainting (Liu et al. 2018)

def _load_torchvision_features(net: nn.Module, path: str | Path, name: str) -> nn.Module:
    """Fill ``net`` (a frozen torchvision-layout ``features`` prefix) from a local weights file.

    ``.safetensors`` or a ``.pth`` state dict (optionally under ``"state_dict"``) read with
    ``torch.load(weights_only=True)``; keys ``net`` does not have (the classifier, deeper layers)
    are ignored. Raises :class:`WeightsError` with one line naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{name} weights {str(path)!r} do not exist (model.options.vgg_weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure (corrupt or foreign file): one actionable line
        raise WeightsError(f"cannot read {name} weights {str(path)!r}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{str(path)!r} is not a torchvision {name} state dict (it holds a {type(state).__name__})")
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    if missing:
        raise WeightsError(
            f"{str(path)!r} is not a torchvision {name} state dict (missing {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''})"
        )
    for k, v in want.items():
        if not isinstance(state[k], Tensor) or tuple(state[k].shape) != tuple(v.shape):
            got = tuple(state[k].shape) if isinstance(state[k], Tensor) else type(state[k]).__name__
            raise WeightsError(f"{str(path)!r}: {k} has shape {got}, {name} has {tuple(v.shape)}")
    net.load_state_dict({k: state[k].float() for k in want})
    return net.requires_grad_(False).eval()


#: torchvision ``vgg16().features`` indices: conv layers up to pool3 and where pool1..pool3 end
_VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128),
                (10, 128, 256), (12, 256, 256), (14, 256, 256))
_VGG16_POOLS = (4, 9, 16)


def _vgg_layers(convs: tuple[tuple[int, int, int], ...], pools: tuple[int, ...], last: int) -> nn.Sequential:
    """torchvision's ``vgg*().features[:last + 1]``: 3x3 convs at the given (index, in, out), 2x2 max
    pools at ``pools``, in-place ReLUs elsewhere (so parameter names match torchvision's)."""
    by_index = {i: (cin, cout) for i, cin, cout in convs}
    layers: list[nn.Module] = []
    for i in range(last + 1):
        if i in by_index:
            layers.append(nn.Conv2d(*by_index[i], 3, padding=1))
        elif i in pools:
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """The first three blocks of VGG-16 (Simonyan & Zisserman 2015), returning pool1, pool2, pool3.

    The layers Liu et al. 2018 use for L_perceptual and L_style (Sec. 3.3). Parameter names are
    torchvision's ``vgg16().features.N.weight``, so a torchvision ImageNet checkpoint loads as is
    (the classifier and deeper layers are ignored). Frozen: it only scores images. Inputs are
    ImageNet-normalised, (N, 3, H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg_layers(_VGG16_CONVS, _VGG16_POOLS, _VGG16_POOLS[-1])
        self.requires_grad_(False).eval()

    @classmethod
    def from_file(cls, path: str | Path) -> VGG16Features:
        """Load ImageNet VGG-16 weights in torchvision's layout from ``.safetensors`` or ``.pth``.

        ``.pth`` files are read with ``torch.load(weights_only=True)`` (no pickled code runs).
        """
        return _load_torchvision_features(cls(), path, "VGG-16")

    def train(self, mode: bool = True) -> VGG16Features:
        return super().train(False)  # a fixed scorer: never in training mode

    def forward(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) ImageNet-normalised -> [pool1, pool2, pool3] feature maps."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG16_POOLS:
                out.append(x)
        return out


def gram_matrix(f: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrix divided by C*H*W (K_p of Liu et al. 2018, Eq. 4)."""
    n, c, h, w = f.shape
    x = f.reshape(n, c, h * w)
    return torch.bmm(x, x.transpose(1, 2)) / (c * h * w)


# ---------------------------------------------------------------- translation (pix2pixHD, SPADE)

#: torchvision ``vgg19().features`` conv layers (index, in, out) up to conv5_1, its max pools, and
#: the ReLUs the loss reads (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1)
_VGG19_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                (14, 256, 256), (16, 256, 256), (19, 256, 512), (21, 512, 512), (23, 512, 512),
                (25, 512, 512), (28, 512, 512))
_VGG19_POOLS = (4, 9, 18, 27)
_VGG19_TAPS = (1, 6, 11, 20, 29)
VGG19_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
"""Weights of the relu1_1 .. relu5_1 terms in pix2pixHD's and SPADE's ``VGGLoss``."""


class VGG19Features(nn.Module):
    """VGG-19 (Simonyan & Zisserman 2015) up to relu5_1, returning relu1_1 .. relu5_1.

    The layers pix2pixHD and SPADE compare in their perceptual loss. Parameter names are
    torchvision's ``vgg19().features.N.weight``, so a torchvision ImageNet checkpoint loads as is
    (the classifier and the layers after relu5_1 are ignored). Frozen: it only scores images.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg_layers(_VGG19_CONVS, _VGG19_POOLS, _VGG19_TAPS[-1])
        self.requires_grad_(False).eval()

    @classmethod
    def from_file(cls, path: str | Path) -> VGG19Features:
        """Load ImageNet VGG-19 weights in torchvision's layout from ``.safetensors`` or ``.pth``.

        ``.pth`` files are read with ``torch.load(weights_only=True)`` (no pickled code runs). A
        VGG-16 file is refused (its ``features.16`` is a pooling layer, VGG-19's a convolution).
        """
        return _load_torchvision_features(cls(), path, "VGG-19")

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # a fixed scorer: never in training mode

    def forward(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) image -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] feature maps.

        H and W should be at least 16 so that relu5_1 is not empty.
        """
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG19_TAPS:
                out.append(x)
        return out


def vgg_feature_loss(vgg: VGG19Features, fake: Tensor, real: Tensor) -> Tensor:
    """pix2pixHD / SPADE perceptual loss: sum_i w_i * mean |phi_i(fake) - phi_i(real)|.

    phi_i are the relu1_1 .. relu5_1 features, w_i = 1/32, 1/16, 1/8, 1/4, 1; the real features
    are constants. As in both official ``VGGLoss`` modules the images go in as the generator makes
    them, (N, 3, H, W) in [-1, 1] without ImageNet normalisation; a 1-channel image is repeated
    to 3 channels. Computed in float32.
    """
    if fake.shape[1] == 1:
        fake, real = fake.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1)
    if fake.shape[1] != 3:
        raise ConfigError(f"the VGG loss needs RGB or grayscale images, not {fake.shape[1]} channels")
    f_fake = vgg(fake.float())
    with torch.no_grad():
        f_real = vgg(real.float())
    return sum(w * (a - b).abs().mean() for w, a, b in zip(VGG19_LAYER_WEIGHTS, f_fake, f_real))


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    t = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_loss(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """1 - mean SSIM of the luminance of two (N, 3, H, W) images in [0, 1] (Wang et al. 2004).

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, BT.601 luma, valid region only: the
    definition the inpainting benchmark reports, so the term rewards what it measures.
    """
    luma = torch.tensor([0.299, 0.587, 0.114], device=a.device, dtype=a.dtype).view(1, 3, 1, 1)
    ya, yb = (a * luma).sum(1, keepdim=True), (b * luma).sum(1, keepdim=True)
    k = _gaussian_window(window, sigma, a.device, a.dtype)
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: F.conv2d(x, k)
    mu_a, mu_b = blur(ya), blur(yb)
    saa = blur(ya * ya) - mu_a * mu_a
    sbb = blur(yb * yb) - mu_b * mu_b
    sab = blur(ya * yb) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return 1.0 - ssim.mean()


def _dilate(hole: Tensor, pixels: int = 1) -> Tensor:
    """Grow a (N, 1, H, W) 0/1 hole map by ``pixels`` (3x3 square per pixel)."""
    return F.max_pool2d(hole, 2 * pixels + 1, stride=1, padding=pixels)


def lowpass_mse(a: Tensor, b: Tensor, block: int) -> Tensor:
    """Mean squared error between the ``block`` x ``block`` means of ``a`` and ``b`` ((N, C, H, W)).

    A partial block at the right or bottom edge is averaged over the pixels it has. The squared
    error of local means is minimised by their conditional mean, where an L1 term settles on the
    median: on a skewed texture the two differ in brightness.
    """
    return (F.avg_pool2d(a.float(), block, ceil_mode=True) - F.avg_pool2d(b.float(), block, ceil_mode=True)).pow(2).mean()


def inpainting_losses(
    out: Tensor,
    gt: Tensor,
    mask: Tensor,
    *,
    valid: float = 1.0,
    hole: float = 6.0,
    tv: float = 0.1,
    perceptual: float = 0.05,
    style: float = 120.0,
    vgg: VGG16Features | None = None,
    border: float = 0.0,
    border_px: int = 3,
) -> dict[str, Tensor]:
    """The weighted loss terms of Liu et al. 2018 (Eq. 1-7) by name; their sum is L_total.

    Args:
        out: (N, C, H, W) network output I_out, in the normalisation of ``gt``.
        gt: (N, C, H, W) ground truth I_gt (ImageNet-normalised when ``vgg`` is given).
        mask: (N, 1 or C, H, W) 1 = known pixel, 0 = hole (M).
        valid, hole, tv, perceptual, style: the weights (paper: 1, 6, 0.1, 0.05, 120); a weight of
            0 drops its term. The perceptual and style terms need ``vgg``; without it they are left
            out (and absent from the result).
        border, border_px: not in the paper; ``border`` > 0 adds ``border`` * L1 over the hole
            pixels within ``border_px`` pixels (Chebyshev distance) of a known pixel, the band
            where a fill must continue the surrounding structure (same 1/N_Igt normalisation).

    L1 terms are means over all N*C*H*W elements (the paper's 1/N_Igt). I_comp is I_out with the
    known pixels set to I_gt. L_tv is taken over neighbour pairs touching the 1-pixel dilation of
    the hole (the paper's region P), normalised by the number of elements as the other terms.
    """
    out, gt, mask = out.float(), gt.float(), mask.float()
    m = mask.expand_as(out)
    comp = m * gt + (1 - m) * out
    terms: dict[str, Tensor] = {}
    if valid > 0:
        terms["valid"] = valid * (m * (out - gt)).abs().mean()
    if hole > 0:
        terms["hole"] = hole * ((1 - m) * (out - gt)).abs().mean()
    if border > 0:
        band = (1 - mask[:, :1]) * _dilate(mask[:, :1], border_px)
        terms["border"] = border * (band * (out - gt)).abs().mean()
    if tv > 0:
        p = _dilate(1 - mask[:, :1])
        dx = (comp[..., :, 1:] - comp[..., :, :-1]).abs() * torch.maximum(p[..., :, 1:], p[..., :, :-1])
        dy = (comp[..., 1:, :] - comp[..., :-1, :]).abs() * torch.maximum(p[..., 1:, :], p[..., :-1, :])
        terms["tv"] = tv * (dx.sum() + dy.sum()) / comp.numel()
    if vgg is not None and (perceptual > 0 or style > 0):
        f_gt = [f.detach() for f in vgg(gt)]
        f_out, f_comp = vgg(out), vgg(comp)
        if perceptual > 0:
            terms["perceptual"] = perceptual * sum(
                (fo - fg).abs().mean() + (fc - fg).abs().mean() for fo, fc, fg in zip(f_out, f_comp, f_gt)
            )
        if style > 0:
            g_gt = [gram_matrix(f) for f in f_gt]
            terms["style_out"] = style * sum((gram_matrix(f) - g).abs().mean() for f, g in zip(f_out, g_gt))
            terms["style_comp"] = style * sum((gram_matrix(f) - g).abs().mean() for f, g in zip(f_comp, g_gt))
    return terms
