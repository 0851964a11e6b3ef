"""The ``progan`` training family: progressive growing (Karras et al. 2018) with :mod:`imgsynth.models.progan`."""

from __future__ import annotations

import importlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family


def _truncated(module: nn.Module, lists: dict[str, int], channels: int) -> nn.Module:
    """A view of a ProGAN network with only its first scales: shares every parameter with ``module``.

    The view runs the network's own forward (pixel norm, fade-in blend) at a smaller size, so
    growing during training needs no second implementation and the parameter set never changes.
    """
    view = object.__new__(type(module))
    view.__dict__ = dict(module.__dict__)
    view._modules = dict(module._modules)
    for name, count in lists.items():
        view._modules[name] = nn.ModuleList(list(getattr(module, name))[:count])
    view.channels = list(module.channels)[:channels]
    return view


@register_family("progan")
class ProGANFamily(Family):
    """Progressive growing of GANs (Karras et al. 2018) with :mod:`imgsynth.models.progan`.

    ``[model.generator] channels`` lists the depth per scale from 4x4 up to ``data.resolution``
    (the discriminator takes the same list unless given its own). Training starts at 4x4; every
    ``steps_per_scale`` steps one scale is added, faded in linearly over ``fade_steps`` steps,
    in G (its output blends with the upsampled previous one) and in D, and real images are
    downsampled to the current size and blended the same way (Sec. 3, App. A.1). Paper setup:
    ``loss.gan = "wgan-gp"`` with the drift term ``model.options.drift = 0.001`` (App. A.1),
    Adam lr 1e-3, betas [0, 0.99], EMA 0.999.

    All scales exist from the first step; a scale that is not grown yet simply is not used
    (Adam keeps one state for the whole run, where the paper's code resets it at each scale).
    An export holds the generator at the depth the run has reached.
    """

    name = "progan"
    arch = "progan"
    option_defaults = {"steps_per_scale": 2000, "fade_steps": 1000, "drift": 0.0}

    def __init__(self) -> None:
        self.depth, self.alpha = 0, 0.0

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.progan").ProGANDiscriminator

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"img_channels": int(dataset.channels)}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"img_channels": int(dataset.channels)}

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        channels = config.get("channels")
        if not channels:
            raise ConfigError("the progan family needs model.generator.channels (depth per scale from 4x4)")
        if 4 * 2 ** (len(channels) - 1) != cfg.data.resolution:
            raise ConfigError(
                f"model.generator.channels has {len(channels)} scales, which make "
                f"{4 * 2 ** (len(channels) - 1)} px images, but data.resolution is {cfg.data.resolution}"
            )
        self.scales = len(channels)
        return config

    def discriminator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().discriminator_config(cfg, dataset)
        config.setdefault("channels", list(cfg.model.generator.get("channels", [])))
        if len(config["channels"]) != len(cfg.model.generator.get("channels", [])):
            raise ConfigError("model.discriminator.channels must have one depth per generator scale")
        return config

    def schedule(self, step: int, options: dict[str, Any]) -> tuple[int, float]:
        """(depth, alpha) after ``step`` steps: depth = grown scales, alpha = weight of the old path."""
        per_scale, fade = int(options["steps_per_scale"]), int(options["fade_steps"])
        if per_scale < 1:
            raise ConfigError("model.options.steps_per_scale must be at least 1")
        depth = min(self.scales - 1, step // per_scale)
        into = step - depth * per_scale
        alpha = max(0.0, 1.0 - into / fade) if depth > 0 and fade > 0 else 0.0
        return depth, alpha

    def begin_step(self, step: int, options: dict[str, Any]) -> None:
        self.depth, self.alpha = self.schedule(step, options)

    def _g(self, G: nn.Module) -> nn.Module:
        return _truncated(G, {"scaleLayers": self.depth, "toRGBLayers": self.depth + 1}, self.depth + 1)

    def _d(self, D: nn.Module) -> nn.Module:
        return _truncated(D, {"scaleLayers": self.depth, "fromRGBLayers": self.depth + 1}, self.depth + 1)

    def generate(self, G: nn.Module, inputs: tuple, generator: torch.Generator, options: dict[str, Any]) -> Tensor:
        return self._g(G)(*inputs, alpha=self.alpha)

    def discriminate(self, D: nn.Module, x: Tensor) -> Any:
        return self._d(D)(x, alpha=self.alpha)

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        x = batch["image"]
        size = 4 * 2 ** self.depth
        down = F.adaptive_avg_pool2d(x, size) if x.shape[-1] != size else x
        if self.alpha > 0:
            coarse = F.interpolate(F.avg_pool2d(down, 2), scale_factor=2, mode="nearest")
            down = torch.lerp(down, coarse, self.alpha)
        return down

    def d_regularizers(self, real_out: Any, options: dict[str, Any]) -> dict[str, Tensor]:
        eps = float(options["drift"])
        if eps <= 0:
            return {}
        return {"drift": eps * real_out.float().square().mean()}

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Samples at the current size, enlarged (nearest) to the final one so grids line up."""
        out = self._g(G)(*inputs, alpha=self.alpha)
        full = 4 * 2 ** (self.scales - 1)
        if out.shape[-1] != full:
            out = F.interpolate(out, size=(full, full), mode="nearest")
        return out, 0

    def export_generator(
        self, config: dict[str, Any], weights: dict[str, Tensor], step: int, options: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        self.scales = len(config["channels"])
        depth, _ = self.schedule(max(step - 1, 0), options)
        keep = depth + 1
        config = {**config, "channels": list(config["channels"])[:keep]}

        def kept(key: str) -> bool:
            parts = key.split(".")
            if parts[0] == "scaleLayers":
                return int(parts[1]) < depth
            if parts[0] == "toRGBLayers":
                return int(parts[1]) < keep
            return True

        return config, {k: v for k, v in weights.items() if kept(k)}
