"""DCGAN generator and discriminator.

Paper: Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434).
Official code: https://github.com/Newmu/dcgan_code (Theano, MIT). The networks here follow the
PyTorch reference https://github.com/pytorch/examples ``dcgan/main.py`` (BSD-3-Clause), whose
``netG`` state dict (keys ``main.<i>.*``) loads into :class:`DCGANGenerator` unchanged. The GAN zoo
DCGAN (https://github.com/facebookresearch/pytorch_GAN_zoo, BSD-3-Clause, torch.hub ``DCGAN``) and
the HugGAN ``huggan/dcgan-mnist`` generator are the same network under other key names; see
``imgsynth.convert.dcgan``.

Generator: ConvT(z -> 2^(k-1) ngf, b x b) . BN . ReLU, then (k - 1) x [ConvT(4, stride 2) halving
the channels . BN . ReLU], then ConvT(ngf -> C, 4, stride 2) . tanh; no biases. The output side is
``b * 2**k`` with the base ``b`` = 4 for the published 32/64 px models (``b`` = 7 gives 28 px, e.g.
for (Fashion-)MNIST without padding).

Deviations from the original:
- The paper's 64 px generator starts from a projected 4x4x1024 map; like pytorch/examples and the
  GAN zoo we use ``8 * ngf`` channels (512 for ngf=64) and a 4x4 transposed conv on z.
- The discriminator returns raw logits (N, 1) without the final sigmoid: losses use
  ``binary_cross_entropy_with_logits`` (same optimum, numerically stable). Its key layout matches
  pytorch/examples ``netD`` (the sigmoid has no parameters).
- On CPU the transposed convolutions run as GEMM + col2im or on channels-last tensors (same sums,
  different order; see ``_conv_transpose``); in eval mode without autograd the GEMM weights are
  cached as contiguous copies.
- The pytorch/examples and GAN-zoo samplers never call ``.eval()``: BatchNorm then normalises with
  the statistics of the sampled batch. That is ``model.train()`` here; ``model.eval()`` uses the
  running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.models.registry import register_model

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "split_resolution"]

_ACTIVATIONS = ("tanh", "none")


def split_resolution(img_resolution: int) -> tuple[int, int]:
    """``img_resolution = base * 2**k`` with 4 <= base <= 7 and k >= 1; returns ``(base, k)``.

    ``k`` is the number of stride-2 layers (64 -> (4, 4), 32 -> (4, 3), 28 -> (7, 2)).
    """
    base, k = int(img_resolution), 0
    while base % 2 == 0 and base // 2 >= 4:
        base, k = base // 2, k + 1
    if k < 1 or not 4 <= base <= 7:
        raise ValueError(
            f"img_resolution must be base * 2**k with base in 4..7 and k >= 1 (e.g. 28, 32, 64), "
            f"got {img_resolution}"
        )
    return base, k


def _gemm_weight(conv: nn.ConvTranspose2d, cache: bool) -> Tensor:
    """The ConvT weight as a (Cout * kh * kw, Cin) matrix for ``_conv_transpose``'s GEMM.

    A contiguous copy makes the GEMM about twice as fast as a transposed view; it is cached for
    inference (``cache=True``) and rebuilt when the weight's version counter, storage, dtype or
    device change (edits through ``weight.data`` bypass the version counter: call ``.train()``
    or :meth:`DCGANGenerator.clear_cache` after them).
    """
    w = conv.weight
    mat = w.reshape(w.shape[0], -1).t()
    if not cache or torch.compiler.is_exporting():  # a traced graph has no storage to key on
        return mat
    key = (w._version, w.data_ptr(), w.dtype, w.device, torch.is_inference_mode_enabled())
    hit = conv.__dict__.get("_gemm_cache")
    if hit is None or hit[0] != key:
        hit = (key, mat.contiguous())
        conv.__dict__["_gemm_cache"] = hit
    return hit[1]


def _conv_transpose(x: Tensor, conv: nn.ConvTranspose2d, cache: bool) -> Tensor:
    """``conv(x)`` for a bias-free, ungrouped ConvTranspose2d, in the form fastest on CPU.

    At DCGAN sizes oneDNN spends longer re-laying out the weight on every call than computing.
    For few input pixels (or very few output channels) a GEMM on the weight plus col2im (``fold``)
    is the same sum and much cheaper; otherwise channels-last inputs run oneDNN's faster kernels.
    Other devices use the module as is.
    """
    if x.device.type != "cpu":
        return conv(x)
    n, cin, h, w = x.shape
    cout, (kh, kw) = conv.out_channels, conv.kernel_size
    if h * w <= 64 or cout < 8:
        cols = torch.matmul(_gemm_weight(conv, cache), x.reshape(n, cin, h * w))
        (sh, sw), (ph, pw) = conv.stride, conv.padding
        size = ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw)
        return F.fold(cols, size, (kh, kw), stride=conv.stride, padding=conv.padding)
    x = x.contiguous(memory_format=torch.channels_last)
    return F.conv_transpose2d(x, conv.weight, None, conv.stride, conv.padding)


@register_model(
    "dcgan", task="sample", tiny={"z_dim": 8, "ngf": 4, "img_channels": 1, "img_resolution": 32}
)
class DCGANGenerator(nn.Module):
    """DCGAN generator: transposed convolutions with BatchNorm and ReLU, tanh output.

    Args:
        z_dim: latent size (100 in pytorch/examples, 120 for the GAN-zoo FashionGen model).
        ngf: channels of the last hidden layer; earlier layers double it per stage.
        img_channels: output channels (3 RGB, 1 greyscale).
        img_resolution: output side, ``base * 2**k`` (e.g. 64, 32, 28), see :func:`split_resolution`.
        output_activation: ``"tanh"`` (DCGAN) or ``"none"`` (GAN-zoo models trained with WGAN-GP).
    """

    def __init__(
        self,
        z_dim: int = 100,
        ngf: int = 64,
        img_channels: int = 3,
        img_resolution: int = 64,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        if output_activation not in _ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {_ACTIVATIONS}, got {output_activation!r}")
        base, k = split_resolution(img_resolution)
        self.z_dim = z_dim
        self.c_dim = 0
        self.ngf = ngf
        self.img_channels = img_channels
        self.img_resolution = img_resolution
        self.output_activation = output_activation

        ch = ngf * 2 ** (k - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch, base, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(k - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers.append(nn.ConvTranspose2d(ch, img_channels, 4, 2, 1, bias=False))
        if output_activation == "tanh":
            layers.append(nn.Tanh())
        # Index-for-index the pytorch/examples Sequential, so its netG keys load as they are.
        self.main = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Generate images.

        Args:
            z: (N, z_dim) or (N, z_dim, 1, 1) latents ~ N(0, 1).

        Returns:
            (N, img_channels, img_resolution, img_resolution) float in [-1, 1] (tanh output).
            In train mode BatchNorm uses the statistics of this batch.
        """
        n = z.shape[0]
        first = self.main[0]
        # A transposed conv of a 1x1 input is a matrix product: z @ W reshaped to (C, b, b).
        x = torch.mm(z.reshape(n, self.z_dim), first.weight.flatten(1))
        x = x.view(n, first.out_channels, *first.kernel_size)
        cache = not self.training and not torch.is_grad_enabled()
        for layer in self.main[1:]:
            x = _conv_transpose(x, layer, cache) if isinstance(layer, nn.ConvTranspose2d) else layer(x)
        return x

    def clear_cache(self) -> None:
        """Forget the cached inference copies of the weights (see ``_gemm_weight``)."""
        for m in self.main:
            m.__dict__.pop("_gemm_cache", None)

    def train(self, mode: bool = True) -> DCGANGenerator:
        self.clear_cache()
        return super().train(mode)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(z,)`` with z of shape (batch_size, z_dim) ~ N(0, 1) on the parameters' device."""
        ref = self.main[0].weight
        z = torch.randn(batch_size, self.z_dim, generator=generator)
        return (z.to(ref.device, ref.dtype),)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: strided convolutions with BatchNorm (not on the first) and LeakyReLU(0.2).

    Mirror of :class:`DCGANGenerator`: Conv(C -> ndf, 4, stride 2) . lrelu, then (k - 1) x
    [Conv(4, stride 2) doubling the channels . BN . lrelu], then Conv(b x b) to one logit. Keys match
    pytorch/examples ``netD`` (``main.<i>.*``).

    Args:
        ndf: channels of the first layer.
        img_channels: input channels.
        img_resolution: input side, ``base * 2**k`` as for the generator.
    """

    def __init__(self, ndf: int = 64, img_channels: int = 3, img_resolution: int = 64) -> None:
        super().__init__()
        base, k = split_resolution(img_resolution)
        self.img_channels = img_channels
        self.img_resolution = img_resolution
        ch = ndf
        layers: list[nn.Module] = [
            nn.Conv2d(img_channels, ch, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(k - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, base, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, img: Tensor) -> Tensor:
        """(N, img_channels, R, R) images in [-1, 1] -> (N, 1) logits (real > 0)."""
        return self.main(img).reshape(img.shape[0], 1)
