"""Label map -> image translation: the shared base of the ``pix2pixhd``, ``spade`` and ``panoptic`` families."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families.base import Family
from imgsynth.training.families.vgg import VGGLoss


def palette(n: int) -> Tensor:
    """n fixed, well-spread RGB colours in [-1, 1] for drawing label maps in sample grids."""
    g = torch.Generator().manual_seed(1234)
    return torch.rand(n, 3, generator=g) * 2 - 1


def uses_instances(cfg: TrainConfig, dataset: Any) -> bool:
    """Whether the label maps come with instance maps (``data.path_inst``, or a source that makes them)."""
    return bool(cfg.data.path_inst) or bool(getattr(dataset, "has_instances", False))


class LabelMapFamily(VGGLoss, Family):
    """Label map -> image translation (pix2pixHD, SPADE): one-hot labels (+ instance edges) in.

    The data is ``source = "paired"`` with ``data.label_nc`` > 0; D sees the encoded labels beside
    the image (conditional multi-scale PatchGAN) and feature matching compares real and fake
    pairs sample by sample (pix2pixHD Eq. 4). The perceptual VGG-19 loss of both papers is on
    when ``model.options.vgg_weights`` names a local torchvision VGG-19 file (lambda
    ``model.options.vgg`` = 10; see :class:`VGGLoss`): imgsynth does not ship those weights.
    ``loss.l1`` > 0 adds an L1 distance to the target (not in either paper; off by default), a
    stand-in when no VGG-19 file is at hand.
    """

    task = "translate"
    data_kind = "paired"
    feature_matching_mode = "paired"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.layers.discriminators").MultiscaleDiscriminator

    def label_channels(self, config: dict[str, Any]) -> int:
        """One-hot channels of G's input (labels, plus dontcare where the model has one)."""
        return int(config["label_nc"])

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        # the encoding of a batch follows G's config
        self._n_labels = self.label_channels(config)
        self._instances = bool(config.get("use_instance", False))
        return config

    def _check_data(self, cfg: TrainConfig, dataset: Any) -> None:
        if cfg.data.label_nc <= 0:
            raise ConfigError(f"the {self.name!r} family translates label maps: set data.label_nc (> 0)")

    def _encode(self, batch: dict[str, Tensor]) -> Tensor:
        from imgsynth.errors import InputError
        from imgsynth.layers.label_maps import instance_edges, one_hot

        n = self._n_labels
        label = batch["label"]
        top = int(label.max())
        if top >= n or int(label.min()) < 0:
            raise InputError(f"a label map holds id {top}, but the model has {n} label channel(s) "
                             "(data.label_nc, plus the dontcare channel where the model has one)")
        x = one_hot(label, n)
        if self._instances:
            x = torch.cat([x, instance_edges(batch["inst"])], 1)
        return x

    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        return (self._encode(batch),)

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["b"]

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        return torch.cat([self._encode(batch).to(images.dtype), images], 1)

    def extra_g_losses(self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        # neither paper has an L1 term; off unless loss.l1 > 0
        return self.paired_losses(cfg, fake, batch["b"])

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        items = self._fixed_items(seeds, dataset)
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "b"}
        ref = next(G.parameters())
        return (self._encode({k: v.to(ref.device) for k, v in batch.items()}),)

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Rows of coloured label map | output | target."""
        fake = G(*inputs).float()
        n = self._n_labels
        colours = palette(n).to(fake.device)
        label = inputs[0][:, :n].float().argmax(1)
        shown = colours[label].permute(0, 3, 1, 2)
        target = torch.stack([it["b"] for it in self._fixed_items(seeds, dataset)]).to(fake.device)

        def rgb(x: Tensor) -> Tensor:
            return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]

        return torch.stack([shown, rgb(fake), rgb(target)], 1).flatten(0, 1), 3

    def io(self, cfg: TrainConfig, generator_config: dict[str, Any], channels: int) -> dict[str, Any]:
        io = super().io(cfg, generator_config, channels)
        io["input"] = "label"
        return io
