"""StyleGAN (v1): style-based generator with AdaIN, per-layer noise and a mapping network.

Paper: Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative Adversarial
Networks", CVPR 2019. Official code (TensorFlow): https://github.com/NVlabs/stylegan
(``training/networks_stylegan.py``), licence CC BY-NC 4.0: non-commercial use only; the released
networks carry the same licence.

Generator = mapping network f (z -> w: pixel norm, 8 equalized-lr dense layers, lrelu 0.2, learning
rate multiplier 0.01) + synthesis network g: a learned constant 4x4 input, then per resolution an
upsampling 3x3 conv (nearest x2, followed by a [1, 2, 1] blur) and a 3x3 conv; after every conv
(and after the constant) the layer epilogue adds per-pixel noise scaled by learned per-channel
strengths, a bias, lrelu, instance normalisation and the style ``y = A(w)`` as
``x * (y_s + 1) + y_b`` (AdaIN, Eq. 1). A final 1x1 toRGB gives the image. Truncation trick and
style mixing act on the per-layer ws (``num_ws = 2 log2(R) - 2``), so mapping and synthesis are
separate calls.

Key layout (imgsynth's own; the official networks are TensorFlow pickles, for which imgsynth has no
converter; ``imgsynth.convert.stylegan`` converts the PyTorch ports' checkpoints, mmgen/mmagic and
rosinality/style-based-gan-pytorch): ``mapping.fc<i>.module.*``,
``mapping.embed.weight``, ``mapping.w_avg``, ``synthesis.b4.const``, ``synthesis.b4.layer0.*``,
``synthesis.b4.conv.*``, ``synthesis.b<res>.{conv0_up,conv1}.*`` with ``conv.module.weight``,
``noise_const``, ``noise_strength``, ``bias``, ``style.module.*``, and ``synthesis.torgb.module.*``.

Deviations from the original:
- Only the final-resolution network (the released ``Gs`` at lod 0): no progressive-growing toRGB
  branches for lower levels of detail.
- The upsampling conv is always the fused transposed form (TF uses it from 128x128 up and nearest
  upsampling + conv below; the two are the same function).
- Instance normalisation and the style affine run as one scale-and-shift per channel.
- ``noise_mode='random'`` draws from the global torch generator of the output device.
- ``up_layer_order``, ``norm_eps`` and ``shared_block_noise`` reproduce the two PyTorch ports whose
  checkpoints imgsynth converts; their defaults are the official TF network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.layers.equalized import EqualizedConv2d, EqualizedLinear, pixel_norm
from imgsynth.models.registry import register_model

__all__ = ["StyleGANGenerator", "StyleGANMapping", "StyleGANSynthesis"]

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
NOISE_MODES = ("const", "random", "none")
# Where an upsampling layer adds its bias relative to the blur (see StyleGANGenerator).
UP_LAYER_ORDERS = ("conv_blur", "conv_bias_blur", "conv_bias_lrelu_blur")


def _memory_format(t: Tensor, resolution: int) -> torch.memory_format:
    # oneDNN / cuDNN convolutions are faster channels-last from 16x16 up; MPS stays NCHW.
    if resolution >= 16 and t.device.type in ("cpu", "cuda"):
        return torch.channels_last
    return torch.contiguous_format


def _blur(x: Tensor) -> Tensor:
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 filter with zero padding 1 (official ``blur2d``)."""
    f = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k = torch.outer(f, f) / 16
    c = x.shape[1]
    return F.conv2d(x, k[None, None].expand(c, 1, 3, 3), padding=1, groups=c)


class StyleGANMapping(nn.Module):
    """z (N, z_dim) [+ label c] -> ws (N, num_ws, w_dim), with truncation.

    Labels (``c_dim > 0``) are embedded by a bias-free linear map to ``z_dim`` features and
    concatenated to z before the pixel norm (official ``LabelConcat``).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        layer_features: int = 512,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if c_dim > 0:
            self.embed = nn.Linear(c_dim, z_dim, bias=False)
            nn.init.normal_(self.embed.weight)
        features = [z_dim * (2 if c_dim else 1)] + [layer_features] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            layer = EqualizedLinear(features[i], features[i + 1], gain=SQRT2, lr_multiplier=lr_multiplier,
                                    scale_bias=False)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> Tensor:
        """z (N, z_dim) ~ N(0, 1), c (N, c_dim) one-hot -> ws (N, num_ws, w_dim).

        Truncation (Sec. 3.1 / App. B): ``w' = w_avg + psi (w - w_avg)``, for the first
        ``truncation_cutoff`` ws only when a cutoff is given (the official default was psi 0.7,
        cutoff 8).
        """
        x = z.to(self.fc0.module.weight.dtype)
        if self.c_dim > 0:
            x = torch.cat([x, self.embed(c.to(x.dtype))], dim=1)
        x = pixel_norm(x)
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), LRELU_SLOPE)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            w_avg = self.w_avg.to(x.dtype)
            if truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class _StyleLayer(nn.Module):
    """[conv (up 2 + blur)] -> noise -> bias -> lrelu -> instance norm -> style (official ``layer_epilogue``).

    ``up_layer_order`` moves the bias of an upsampling layer (and, for the mmgen order, one more
    lrelu) in front of the blur; see :class:`StyleGANGenerator`.
    """

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, conv: bool = True,
        up: bool = False, use_noise: bool = True, up_layer_order: str = "conv_blur", norm_eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.norm_eps = norm_eps
        # Only upsampling layers have a blur, so only they can put the bias in front of it.
        self.bias_before_blur = up and up_layer_order != "conv_blur"
        self.lrelu_before_blur = up and up_layer_order == "conv_bias_lrelu_blur"
        if conv:
            self.conv = EqualizedConv2d(in_channels, out_channels, 3, padding=1, bias=False, gain=SQRT2,
                                        scale_bias=False, up=2 if up else 1)
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([out_channels]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.style = EqualizedLinear(w_dim, 2 * out_channels, gain=1.0, scale_bias=False)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", noise: Tensor | None = None) -> Tensor:
        """x (N, I, R/up, R/up) (or the (N, C, 4, 4) constant), w (N, w_dim) -> (N, C, R, R).

        ``noise`` (N or 1, 1, R, R) replaces the drawn map in 'random' mode (a block shares one).
        """
        bias = self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if hasattr(self, "conv"):
            x = self.conv(x)
            if self.bias_before_blur:
                inplace = not x.requires_grad
                x = x.add_(bias) if inplace else x + bias
                if self.lrelu_before_blur:
                    x = F.leaky_relu_(x, LRELU_SLOPE) if inplace else F.leaky_relu(x, LRELU_SLOPE)
            if self.up:
                x = _blur(x)
        n, c = x.shape[:2]
        inplace = not x.requires_grad
        if self.use_noise and noise_mode != "none":
            strength = self.noise_strength.to(x.dtype).reshape(1, -1, 1, 1)
            if noise_mode == "const":
                noise = self.noise_const.to(x.dtype)[None, None]
            elif noise is None:
                noise = torch.randn([n, 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            else:
                noise = noise.to(x.dtype)
            x = x.addcmul_(noise, strength) if inplace else x.addcmul(noise, strength)
        if not self.bias_before_blur:
            x = x.add_(bias) if inplace else x + bias
        x = F.leaky_relu_(x, LRELU_SLOPE) if inplace else F.leaky_relu(x, LRELU_SLOPE)
        # Instance norm (biased variance) and AdaIN style folded into one scale and shift.
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        style = self.style(w).to(x.dtype)
        scale = torch.rsqrt(var + self.norm_eps) * (style[:, :c] + 1).reshape(n, c, 1, 1)
        shift = style[:, c:].reshape(n, c, 1, 1) - mean * scale
        return x.mul_(scale).add_(shift) if inplace else x * scale + shift


class _StyleBlock(nn.Module):
    """Resolution ``r``: 4x4 = constant + conv; higher = upsampling conv (+ blur) + conv."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, use_noise: bool,
        up_layer_order: str = "conv_blur", norm_eps: float = 1e-8, shared_block_noise: bool = False,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.shared_block_noise = shared_block_noise and use_noise
        kw = {"w_dim": w_dim, "resolution": resolution, "use_noise": use_noise, "norm_eps": norm_eps}
        if resolution == 4:
            self.const = nn.Parameter(torch.ones([out_channels, 4, 4]))
            self.layer0 = _StyleLayer(out_channels, out_channels, conv=False, **kw)
            self.conv = _StyleLayer(out_channels, out_channels, **kw)
        else:
            self.conv0_up = _StyleLayer(in_channels, out_channels, up=True, up_layer_order=up_layer_order, **kw)
            self.conv1 = _StyleLayer(out_channels, out_channels, **kw)

    def forward(self, x: Tensor | None, ws: Tensor, noise_mode: str) -> Tensor:
        """x (N, I, r/2, r/2) or None (4x4), ws (N, 2, w_dim) -> (N, C, r, r)."""
        noise = None
        if self.shared_block_noise and noise_mode == "random":
            r = self.resolution
            noise = torch.randn([ws.shape[0], 1, r, r], device=ws.device, dtype=ws.dtype)
        if self.resolution == 4:
            # repeat copies: the epilogue works in place and must not touch the parameter.
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.layer0(x, ws[:, 0], noise_mode, noise)
            return self.conv(x, ws[:, 1], noise_mode, noise)
        x = x.contiguous(memory_format=_memory_format(x, self.resolution))
        return self.conv1(self.conv0_up(x, ws[:, 0], noise_mode, noise), ws[:, 1], noise_mode, noise)


class StyleGANSynthesis(nn.Module):
    """ws (N, num_ws, w_dim) -> image; channels at resolution r: ``min(fmap_base // (r/2), fmap_max)``."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        use_noise: bool = True,
        up_layer_order: str = "conv_blur",
        norm_eps: float = 1e-8,
        shared_block_noise: bool = False,
    ) -> None:
        super().__init__()
        if up_layer_order not in UP_LAYER_ORDERS:
            raise ValueError(f"up_layer_order must be one of {UP_LAYER_ORDERS}, got {up_layer_order!r}")
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_ws = 2 * len(self.block_resolutions)
        # Official nf(stage) = min(fmap_base / 2**stage, fmap_max) with stage = log2(r) - 1.
        channels = {r: min(fmap_base // (r // 2), fmap_max) for r in self.block_resolutions}
        for r in self.block_resolutions:
            block = _StyleBlock(channels.get(r // 2, 0), channels[r], w_dim, r, use_noise,
                                up_layer_order=up_layer_order, norm_eps=norm_eps,
                                shared_block_noise=shared_block_noise)
            setattr(self, f"b{r}", block)
        self.torgb = EqualizedConv2d(channels[img_resolution], img_channels, 1, gain=1.0, scale_bias=False)

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """ws (N, num_ws, w_dim) -> image (N, img_channels, R, R), roughly [-1, 1], not clamped."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = ws.to(self.torgb.module.weight.dtype)
        x = None
        for i, r in enumerate(self.block_resolutions):
            x = getattr(self, f"b{r}")(x, ws[:, 2 * i : 2 * i + 2], noise_mode)
        return self.torgb(x).contiguous()


@register_model(
    "stylegan",
    task="sample",
    tiny={"z_dim": 16, "w_dim": 16, "img_resolution": 16, "mapping_layers": 2, "mapping_features": 16,
          "fmap_base": 64, "fmap_max": 16},
)
class StyleGANGenerator(nn.Module):
    """StyleGAN (v1) generator: ``mapping`` (z, c -> ws) then ``synthesis`` (ws -> image).

    Defaults are the official FFHQ 1024x1024 configuration (18 ws of 512).

    Args:
        z_dim, w_dim: latent sizes; c_dim: label size (0 = unconditional).
        img_resolution, img_channels: output size (power of two) and channels.
        mapping_layers, mapping_features, mapping_lr_multiplier: mapping MLP depth, width, lr multiplier.
        w_avg_beta: decay of the tracked mean w (truncation centre).
        fmap_base, fmap_max: channels per resolution r are ``min(fmap_base // (r / 2), fmap_max)``.
        use_noise: per-layer noise inputs.
        up_layer_order: where an upsampling layer adds its conv bias. 'conv_blur' (official TF:
            up-conv -> blur, then noise + bias -> lrelu); 'conv_bias_blur' (rosinality's PyTorch
            port: up-conv + bias -> blur -> noise -> lrelu); 'conv_bias_lrelu_blur' (mmgen / mmagic:
            up-conv + bias -> lrelu -> blur -> noise -> lrelu). The zero-padded blur makes the
            three differ at the borders, and the mmgen order has one more activation.
        norm_eps: instance-norm epsilon (official 1e-8; ``nn.InstanceNorm2d``'s 1e-5 in the PyTorch ports).
        shared_block_noise: in 'random' noise mode both layers of a block get the same noise map
            (rosinality's port draws one map per resolution); official: one map per layer.
    """

    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int = 1024,
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_features: int = 512,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        use_noise: bool = True,
        up_layer_order: str = "conv_blur",
        norm_eps: float = 1e-8,
        shared_block_noise: bool = False,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = StyleGANSynthesis(w_dim, img_resolution, img_channels, fmap_base=fmap_base,
                                           fmap_max=fmap_max, use_noise=use_noise, up_layer_order=up_layer_order,
                                           norm_eps=norm_eps, shared_block_noise=shared_block_noise)
        self.num_ws = self.synthesis.num_ws
        self.mapping = StyleGANMapping(z_dim, c_dim, w_dim, self.num_ws, num_layers=mapping_layers,
                                       layer_features=mapping_features, lr_multiplier=mapping_lr_multiplier,
                                       w_avg_beta=w_avg_beta)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        """z (N, z_dim) ~ N(0, 1), c (N, c_dim) one-hot or None -> image (N, img_channels, R, R).

        The image is roughly in [-1, 1] and not clamped. ``noise_mode``: 'const' (stored noise
        maps), 'random' (fresh N(0, 1) noise, the official default), 'none'.
        """
        if self.c_dim and c is None:
            raise ValueError(f"this generator is conditional: pass c of shape (N, {self.c_dim})")
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(z, c): standard-normal latents and one-hot labels (an (N, 0) tensor when unconditional)."""
        z = torch.randn(batch_size, self.z_dim, generator=generator)
        c = torch.zeros(batch_size, self.c_dim)
        if self.c_dim:
            c[torch.arange(batch_size), torch.randint(self.c_dim, (batch_size,), generator=generator)] = 1
        return z, c
