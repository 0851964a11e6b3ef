"""The base class of training families and the weight initialisations they share.

A family says how to build the generator G and discriminator D from the recipe, which kind of
data it trains on, what G is fed, what D looks at, which extra generator losses it adds, and
what an export is (registry architecture + constructor config + task). The loop in
:mod:`imgsynth.training.loop` does everything else (steps, losses, EMA, precision, checkpoints,
DDP) the same way for every family.
"""

from __future__ import annotations

import difflib
import inspect
import math
import typing
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig, UnsupportedType, check_value


def fill_data_kwargs(cls: Any, given: dict[str, Any], data: dict[str, Any], what: str) -> dict[str, Any]:
    """Fill constructor arguments that the data determines (channels, resolution) if absent.

    A value given in the recipe that contradicts the data is a ConfigError naming both.
    """
    params = inspect.signature(cls).parameters
    out = dict(given)
    for name, value in data.items():
        if name not in params:
            continue
        if name in out and out[name] != value:
            raise ConfigError(
                f"model.{what}.{name} = {out[name]!r} does not match the data ({name} = {value!r}); "
                f"remove it from the recipe or change the data settings"
            )
        out[name] = value
    return out


def check_kwargs(cls: Any, given: dict[str, Any], what: str) -> None:
    """Recipe constructor arguments of ``cls`` (``[model.<what>]``): known names and the annotated types.

    An unknown name is a ConfigError with a did-you-mean; a value of another type than the
    constructor's annotation is one naming ``model.<what>.<name>``. Ranges are the constructor's
    own business: :func:`construct` turns what it raises into a ConfigError.
    """
    if cls is None:
        return
    params = inspect.signature(cls).parameters
    known = [p for p in params if p != "self"]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # annotations that do not resolve here: names only
        hints = {}
    for name, value in given.items():
        key = f"model.{what}.{name}"
        if name not in params and not open_ended:
            close = difflib.get_close_matches(name, known, n=1)
            hint = (f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}" if known
                    else "this network takes none here")
            raise ConfigError(f"unknown config key {key!r}; {hint}")
        if name in hints:
            try:
                check_value(value, hints[name], key)
            except UnsupportedType:
                pass


def construct(cls: Any, config: dict[str, Any], what: str) -> nn.Module:
    """``cls(**config)``, with whatever the constructor raises on a bad value as a ConfigError on ``model.<what>``."""
    check_kwargs(cls, config, what)
    name = getattr(cls, "__name__", str(cls))
    try:
        with warnings.catch_warnings():  # refused below, not worth a warning
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            module = cls(**config)
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError, AssertionError, KeyError, IndexError, ZeroDivisionError,
            OverflowError, AttributeError) as exc:
        raise ConfigError(f"model.{what}: these values do not build {name} ({type(exc).__name__}: {exc})") from None
    empty = [n for n, p in module.named_parameters() if p.numel() == 0]
    if empty:
        raise ConfigError(f"model.{what}: these values give {name} layers without weights ({empty[0]}, ...); "
                          "widths and sizes must be at least 1")
    return module


class Family:
    """Base class: an unconditional image GAN (G(z) -> image, D(image) -> logits).

    Subclasses set ``name``, ``arch`` (the registry name of G, written to exports) and implement
    :meth:`discriminator_class`; conditional families override the data hooks.
    """

    name = ""
    arch = ""
    task = "sample"
    data_kind = "images"
    #: how feature matching compares real and fake features ("mean" or "paired")
    feature_matching_mode = "mean"
    #: whether D's loss trains G (False: no adversarial term, so no ADA either)
    adversarial = True
    #: whether ``augment.ada = "auto"`` turns adaptive discriminator augmentation on
    ada_default = False

    # ------------------------------------------------------------ building
    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        """G's constructor arguments that follow from the data (filled when the class takes them)."""
        return {"img_channels": int(dataset.channels), "img_resolution": cfg.data.resolution}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        """D's constructor arguments that follow from the data."""
        return {"img_channels": int(dataset.channels), "img_resolution": cfg.data.resolution}

    def generator_class(self) -> Any:
        """The registered generator class."""
        from imgsynth.models.registry import get_model

        return get_model(self.arch).cls

    def discriminator_class(self) -> Any:
        """The discriminator class."""
        raise NotImplementedError

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        """Constructor kwargs of G: the recipe's ``[model.generator]`` plus data-derived values."""
        return fill_data_kwargs(
            self.generator_class(), cfg.model.generator, self.generator_data_kwargs(cfg, dataset),
            "generator",
        )

    def discriminator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        """Constructor kwargs of D: ``[model.discriminator]`` plus data-derived values."""
        return fill_data_kwargs(
            self.discriminator_class(), cfg.model.discriminator,
            self.discriminator_data_kwargs(cfg, dataset), "discriminator",
        )

    def check_networks(self, cfg: TrainConfig) -> None:
        """``[model.generator]`` and ``[model.discriminator]``: names and types, before any data is read."""
        check_kwargs(self.generator_class(), cfg.model.generator, "generator")
        check_kwargs(self.discriminator_class(), cfg.model.discriminator, "discriminator")

    def build_generator(self, config: dict[str, Any]) -> nn.Module:
        """G from its constructor kwargs (the registered class, as exports are loaded)."""
        return construct(self.generator_class(), config, "generator")

    def build_discriminator(self, config: dict[str, Any]) -> nn.Module:
        """D from its constructor kwargs."""
        return construct(self.discriminator_class(), config, "discriminator")

    def init_weights(self, module: nn.Module) -> None:
        """Initialise a freshly built network (default: keep PyTorch's initialisation)."""

    #: family options (``[model.options]``) and their defaults
    option_defaults: dict[str, Any] = {}

    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        """``[model.options]`` over the family's defaults; unknown keys, other types and negative or
        non-finite numbers (every numeric option is a weight, a count or a probability) are refused."""
        out = dict(self.option_defaults)
        for key, value in cfg.model.options.items():
            if key not in out:
                known = ", ".join(sorted(out)) or "none"
                close = difflib.get_close_matches(key, list(out), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {known}"
                raise ConfigError(f"model.options.{key}: the {self.name!r} family has no such option ({hint})")
            default = out[key]
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ConfigError(f"model.options.{key} must be {type(default).__name__}, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise ConfigError(f"model.options.{key} must be a finite number, got {value!r}")
                if value < 0:
                    raise ConfigError(f"model.options.{key} must not be negative, got {value!r}")
            out[key] = value
        return out

    # ------------------------------------------------------------ one step
    def generate(self, G: nn.Module, inputs: tuple, generator: torch.Generator, options: dict[str, Any]) -> Tensor:
        """G's forward pass during training (families add style mixing, random noise, ...)."""
        return G(*inputs)

    def begin_step(self, step: int, options: dict[str, Any]) -> None:
        """Called before every step (and before sample grids) with the number of finished steps."""

    def discriminate(self, D: nn.Module, x: Tensor) -> Any:
        """D's forward pass during training."""
        return D(x)

    def adversarial_weight(self, options: dict[str, Any]) -> float:
        """Weight of the adversarial term in G's loss (1 for GANs; families whose adversarial term
        is an extra on a reconstruction loss, such as ``pconv``'s, give their option)."""
        return 1.0

    def d_regularizers(self, real_out: Any, options: dict[str, Any]) -> dict[str, Tensor]:
        """Extra discriminator terms by name (already weighted), from D's outputs on real data."""
        return {}

    def export_generator(
        self, config: dict[str, Any], weights: dict[str, Tensor], step: int, options: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The generator an export holds (config and weights); the trained one as it is by default."""
        return config, weights

    def g_regularizers(
        self, G: nn.Module, batch_size: int, generator: torch.Generator, step: int, options: dict[str, Any]
    ) -> dict[str, Tensor]:
        """Extra generator regularisers of this step by name (already weighted); none by default."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Training state the family keeps itself (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def generator_inputs(
        self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple:
        """Positional inputs of G for this batch: latents drawn from ``generator`` (a CPU generator)."""
        n = next(iter(batch.values())).shape[0]
        return G.dummy_inputs(n, generator)

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        """The real images of a batch (what G should produce)."""
        return batch["image"]

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        """What D sees for ``images`` (conditional families concatenate their condition)."""
        return images

    def extra_g_losses(
        self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor
    ) -> dict[str, Tensor]:
        """Non-adversarial generator losses by name (already weighted); none for plain GANs."""
        return {}

    def validation_pair(
        self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Tensor] | None:
        """(G's output, the target) in [-1, 1] for held-out items; None for sampling families."""
        if self.task == "sample":
            return None
        return G(*self.generator_inputs(G, batch, generator)), self.real(batch)

    # ------------------------------------------------------------ grids and exports
    def _fixed_items(self, seeds: list[int], dataset: Any) -> list[dict[str, Tensor]]:
        """Dataset items for the grids of data-driven families: item ``seed % len`` with its
        epoch-0 augmentation, so a seed shows the same item at every checkpoint."""
        return [dataset[(s % len(dataset), 0)] for s in seeds]

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        """Fixed inputs for sample grids: one latent per seed, each from its own CPU generator.

        The same seed gives the same latent whatever the grid size (as ``imgsynth sample`` does).
        """
        parts = [G.dummy_inputs(1, torch.Generator().manual_seed(s)) for s in seeds]
        return tuple(torch.cat(xs, 0) for xs in zip(*parts))

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """What a sample grid shows, and its number of columns (0: square grid)."""
        return G(*inputs), 0

    def feature_layers(self, D: nn.Module) -> list[nn.Module]:
        """Modules whose outputs are D's features for feature matching: its nonlinearities."""
        acts = (nn.LeakyReLU, nn.ReLU, nn.SiLU, nn.GELU, nn.ELU)
        return [m for m in D.modules() if isinstance(m, acts)]

    def io(self, cfg: TrainConfig, generator_config: dict[str, Any], channels: int) -> dict[str, Any]:
        """The ``io`` block of an export's ``config.json``."""
        return {"value_range": [-1, 1], "image_channels": channels, "resolution": cfg.data.resolution}


@torch.no_grad()
def init_normal(module: nn.Module) -> None:
    """Conv/linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0.

    DCGAN (Radford et al. 2016, Sec. 4) and pix2pix (``init_type='normal'``, gain 0.02).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = getattr(m, "weight_orig", m.weight)  # spectral-norm wrapped convs
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def init_xavier(module: nn.Module) -> None:
    """SPADE's ``init_type='xavier'`` with gain 0.02; norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weight = getattr(m, "weight_orig", m.weight)
            nn.init.xavier_normal_(weight, gain=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
