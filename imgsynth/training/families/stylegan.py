"""The ``stylegan`` training family: StyleGAN (Karras et al. 2019) with :mod:`imgsynth.models.stylegan`."""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family


def _stylegan_channels(config: dict[str, Any], cls: Any) -> list[int]:
    """Feature depth per resolution of a StyleGAN generator config, from 4x4 up.

    ``min(fmap_base // (r / 2), fmap_max)`` (official ``nf(stage)``), with the class defaults for
    the keys the config leaves out.
    """
    params = inspect.signature(cls).parameters
    base = int(config.get("fmap_base", params["fmap_base"].default))
    top = int(config.get("fmap_max", params["fmap_max"].default))
    res = int(config.get("img_resolution", params["img_resolution"].default))
    return [min(base // (r // 2), top) for r in (2**i for i in range(2, int(math.log2(res)) + 1))]


@register_family("stylegan")
class StyleGANFamily(Family):
    """StyleGAN (Karras et al. 2019): :class:`imgsynth.models.stylegan.StyleGANGenerator` and the
    Progressive GAN discriminator :class:`imgsynth.models.progan.ProGANDiscriminator`.

    The paper keeps ProGAN's discriminator (Sec. 2, App. C), so D is that class, with minibatch
    stddev; its depth per scale (``[model.discriminator] channels``, from 4x4 up) defaults to the
    generator's, ``min(fmap_base // (r / 2), fmap_max)``, as in the official ``D_basic``.

    Training follows the paper's FFHQ setup (App. C) where it concerns the networks:

    - the non-saturating logistic loss (``loss.gan = "nonsaturating"``, the loop's default) with
      R1 on real images every discriminator step, ``(r1_gamma / 2) * E ||grad D(x)||^2``
      (Mescheder et al. 2018, Eq. 9; ``model.options.r1_gamma``, default 10 as for FFHQ). The
      family applies R1 itself, so ``loss.r1_gamma`` (the loop's lazy R1) must stay 0; the logged
      ``r1`` is the weighted term;
    - style mixing regularisation (Sec. 3.1): with probability ``model.options.style_mixing``
      (0.9) the ws after a uniformly drawn cut come from a second latent, one cut per batch. The
      tracked mean w (the truncation centre) follows the first latents only, as the official
      ``dlatent_avg`` does;
    - fresh per-pixel noise in every layer (``noise_mode = "random"``);
    - the mapping network's learning-rate multiplier 0.01 and equalized learning rates (inside
      the layers); recipes set the paper's Adam ``betas = [0, 0.99]``, lr 0.001 and an EMA of G
      (``optim.ema_decay``; official: half-life 10k images, ``0.5 ** (batch / 10000)``).

    Deviations from the original:

    - Constant resolution: both networks train at ``data.resolution`` from the first step. The
      paper grows them progressively (8x8 up, as ProGAN); progressive growing is not done here
      (the ``progan`` family has it for ProGAN).
    - D downsamples with average pooling and has no [1, 2, 1] blur before it (the official
      StyleGAN ``D_basic`` blurs; ProGAN's does not).
    - Under fp16 autocast the R1 gradient is taken without loss scaling.
    - Unconditional only (``c_dim`` must be 0).
    """

    name = "stylegan"
    arch = "stylegan"
    option_defaults = {"style_mixing": 0.9, "r1_gamma": 10.0}

    def __init__(self) -> None:
        self._r1_gamma = 0.0
        self._real_in: Tensor | None = None

    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        opts = super().options(cfg)
        if not 0.0 <= opts["style_mixing"] <= 1.0:
            raise ConfigError("model.options.style_mixing must be a probability in [0, 1]")
        if opts["r1_gamma"] < 0:
            raise ConfigError("model.options.r1_gamma must not be negative")
        if cfg.loss.r1_gamma > 0:
            raise ConfigError(
                "the stylegan family applies R1 itself at every D step (model.options.r1_gamma, "
                "default 10); set loss.r1_gamma = 0"
            )
        self._r1_gamma = float(opts["r1_gamma"])
        return opts

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.progan").ProGANDiscriminator

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"img_channels": int(dataset.channels)}

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        if config.get("c_dim", 0):
            raise ConfigError("the stylegan family trains unconditional models only; remove model.generator.c_dim")
        return config

    def discriminator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().discriminator_config(cfg, dataset)
        g_config = self.generator_config(cfg, dataset)
        config.setdefault("channels", _stylegan_channels(g_config, self.generator_class()))
        scales = int(math.log2(cfg.data.resolution)) - 1
        if len(config["channels"]) != scales:
            raise ConfigError(
                f"model.discriminator.channels has {len(config['channels'])} scales, but "
                f"data.resolution {cfg.data.resolution} needs {scales} (one depth per scale from 4x4)"
            )
        return config

    # ------------------------------------------------------------ one step
    def generate(self, G: nn.Module, inputs: tuple, generator: torch.Generator, options: dict[str, Any]) -> Tensor:
        return G.synthesis(self.mixed_ws(G, inputs[0], inputs[1], generator, options), noise_mode="random")

    def mixed_ws(self, G: nn.Module, z: Tensor, c: Tensor, generator: torch.Generator,
                 options: dict[str, Any]) -> Tensor:
        """ws (N, num_ws, w_dim) of ``z``, with style mixing regularisation (Sec. 3.1).

        One draw per batch, always the same three (cut, coin, second latents), so that the RNG
        stream does not depend on the outcome.
        """
        ws = G.mapping(z, c)
        p = float(options["style_mixing"])
        if p <= 0 or G.num_ws < 2:
            return ws
        cutoff = int(torch.randint(1, G.num_ws, (), generator=generator))
        mix = float(torch.rand((), generator=generator)) < p
        z2 = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
        if not mix:
            return ws
        # the official code tracks dlatent_avg from the first latents only
        w_avg = G.mapping.w_avg.clone()
        mixed = G.mapping(z2, c)
        with torch.no_grad():
            G.mapping.w_avg.copy_(w_avg)
        return torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        """The real images; in D's step they require grad, for R1 in :meth:`d_regularizers`."""
        x = batch["image"]
        if self._r1_gamma > 0 and torch.is_grad_enabled():
            x = x.detach().requires_grad_(True)
            self._real_in = x
        return x

    def d_regularizers(self, real_out: Any, options: dict[str, Any]) -> dict[str, Tensor]:
        x, self._real_in = self._real_in, None
        gamma = float(options["r1_gamma"])
        if gamma <= 0 or x is None:
            return {}
        from imgsynth.training.losses import r1_penalty

        return {"r1": (gamma / 2) * r1_penalty(real_out, x)}
