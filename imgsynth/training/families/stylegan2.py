"""The ``stylegan2`` training family: StyleGAN2 (Karras et al. 2020) with :mod:`imgsynth.models.stylegan2`."""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family


@register_family("stylegan2")
class StyleGAN2Family(Family):
    """StyleGAN2 (Karras et al. 2020): :mod:`imgsynth.models.stylegan2` generator and discriminator.

    Training follows StyleGAN2-ADA's ``StyleGAN2Loss`` where it matters for the networks: random
    per-pixel noise, style mixing regularisation (Karras et al. 2019, Sec. 3.1; probability
    ``model.options.style_mixing``, 0.9 in the paper), the non-saturating loss with lazy R1
    (``loss.r1_gamma``, ``loss.r1_every = 16``), equalized learning rates and the mapping network's
    learning-rate multiplier (inside the layers), and an EMA of G. Recipes set the paper's Adam
    betas ``[0, 0.99]``.

    Path-length regularisation (Sec. 3.2, Eq. 4) runs every ``pl_every`` steps on a batch
    ``pl_batch_shrink`` times smaller, weighted ``pl_weight * pl_every``, with the running target
    length ``pl_decay`` as in StyleGAN2-ADA; it is added to that step's G loss (StyleGAN2-ADA
    takes a separate optimiser step for it).

    Left out: the lazy-regularisation correction of Adam's hyper-parameters, ADA augmentation,
    and class-conditional training (``c_dim`` must be 0).
    """

    name = "stylegan2"
    arch = "stylegan2"
    option_defaults = {"style_mixing": 0.9, "pl_weight": 2.0, "pl_every": 4, "pl_batch_shrink": 2,
                       "pl_decay": 0.01}

    def __init__(self) -> None:
        self.pl_mean = torch.zeros(())

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.stylegan2").StyleGAN2Discriminator

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        if config.get("c_dim", 0):
            raise ConfigError("the stylegan2 family trains unconditional models only; remove model.generator.c_dim")
        return config

    def generate(self, G: nn.Module, inputs: tuple, generator: torch.Generator, options: dict[str, Any]) -> Tensor:
        return G.synthesis(self._mixed_ws(G, inputs[0], inputs[1], generator, options), noise_mode="random")

    def _mixed_ws(self, G: nn.Module, z: Tensor, c: Tensor, generator: torch.Generator,
                  options: dict[str, Any]) -> Tensor:
        ws = G.mapping(z, c)
        p = float(options["style_mixing"])
        if p > 0 and G.num_ws > 1:
            # one cutoff per batch, as StyleGAN2-ADA's style_mixing_prob
            cutoff = int(torch.randint(1, G.num_ws, (), generator=generator))
            if float(torch.rand((), generator=generator)) >= p:
                cutoff = G.num_ws
            z2 = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
            mixed = G.mapping(z2, c)
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return ws

    def g_regularizers(
        self, G: nn.Module, batch_size: int, generator: torch.Generator, step: int, options: dict[str, Any]
    ) -> dict[str, Tensor]:
        weight, every = float(options["pl_weight"]), int(options["pl_every"])
        if weight <= 0 or every < 1 or step % every:
            return {}
        n = max(1, batch_size // max(1, int(options["pl_batch_shrink"])))
        ref = G.mapping.fc0.weight
        z = torch.randn(n, G.z_dim, generator=generator).to(ref.device)
        c = torch.zeros(n, G.c_dim, device=ref.device)
        ws = self._mixed_ws(G, z, c, generator, options)
        img = G.synthesis(ws, noise_mode="random")
        # random image-space direction y, scaled so the expected length does not depend on resolution
        y = torch.randn(img.shape, generator=generator).to(img.device, img.dtype)
        y = y / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.to(lengths.device).lerp(lengths.mean().detach(), float(options["pl_decay"]))
        penalty = (lengths - self.pl_mean).square().mean()
        return {"pl": penalty * weight * every}

    def state_dict(self) -> dict[str, Any]:
        return {"pl_mean": self.pl_mean.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"].clone()
