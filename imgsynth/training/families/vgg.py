"""The VGG-19 perceptual loss term shared by the translation families (pix2pix, pix2pixHD, SPADE, panoptic)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig


class VGGLoss:
    """The VGG-19 perceptual loss of pix2pixHD (Wang et al. 2018, Sec. 3.2) and SPADE (Park et al.
    2019, Sec. 4) for the translation families: ``model.options.vgg`` (lambda, default 10, the
    papers' weight) times :func:`imgsynth.training.losses.vgg_feature_loss` between G's output and
    the target.

    It needs ImageNet VGG-19 weights, which imgsynth does not ship and cannot download:
    ``model.options.vgg_weights`` names a local torchvision ``vgg19`` state dict (``.pth``, read
    with ``torch.load(weights_only=True)``, or ``.safetensors``). Empty (the default) or
    ``vgg = 0`` leaves the term out. The file is read when training sets up G (not by export).
    """

    option_defaults = {"vgg_weights": "", "vgg": 10.0}
    _vgg_net: nn.Module | None = None
    _vgg_weight: float = 0.0
    _vgg_path: str = ""

    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        opts = super().options(cfg)  # type: ignore[misc]
        if opts["vgg"] < 0:
            raise ConfigError("model.options.vgg must not be negative")
        self._vgg_path = opts["vgg_weights"] if opts["vgg"] > 0 else ""
        self._vgg_weight = opts["vgg"]
        return opts

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)  # type: ignore[misc]
        self._vgg_net = None
        if self._vgg_path:
            from imgsynth.errors import WeightsError
            from imgsynth.training.losses import VGG19Features

            try:
                self._vgg_net = VGG19Features.from_file(self._vgg_path)
            except WeightsError as exc:
                raise ConfigError(f"model.options.vgg_weights: {str(exc).splitlines()[0]}") from None
        return config

    def paired_losses(self, cfg: TrainConfig, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        """:meth:`vgg_losses` plus ``loss.l1`` times the L1 distance to the target (when > 0)."""
        terms = self.vgg_losses(fake, target)
        if cfg.loss.l1 > 0:
            terms["l1"] = cfg.loss.l1 * (fake.float() - target.float()).abs().mean()
        return terms

    def vgg_losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        """``{"vgg": lambda * L_VGG}``, or nothing when the term is off."""
        if self._vgg_net is None:
            return {}
        from imgsynth.training.losses import vgg_feature_loss

        self._vgg_net.to(fake.device)
        return {"vgg": self._vgg_weight * vgg_feature_loss(self._vgg_net, fake, target)}
