"""Families: what the shared loop needs to know about one kind of model.

A family says how to build the generator G and discriminator D from the recipe, which kind of
data it trains on, what G is fed, what D looks at, which extra generator losses it adds, and
what an export is (registry architecture + constructor config + task). The loop in
:mod:`imgsynth.training.loop` does everything else (steps, losses, EMA, precision, checkpoints,
DDP) the same way for every family.

Registered families: ``dcgan`` (Radford et al. 2016), ``gan`` (Goodfellow et al. 2014, MLP
networks), ``pix2pix`` (Isola et al. 2017, paired translation with a U-Net and a PatchGAN),
``stylegan`` (Karras et al. 2019, at constant resolution), ``stylegan2`` (Karras et al.
2020, with style mixing, lazy R1 and path-length regularisation),
``pix2pixhd`` (Wang et al. 2018) and ``spade`` (Park et al. 2019) for label maps, ``panoptic``
(Dundar et al. 2020) for panoptic maps, ``progan`` (Karras et al.
2018, progressive growing), ``pconv`` (Liu et al. 2018, inpainting with partial convolutions,
reconstruction losses only).
"""

from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.errors import ConfigError, ImgsynthError
from imgsynth.training.config import TrainConfig

_FAMILIES: dict[str, Callable[[], "Family"]] = {}


def register_family(name: str) -> Callable[[type["Family"]], type["Family"]]:
    """Class decorator adding a :class:`Family` under ``name``."""

    def deco(cls: type[Family]) -> type[Family]:
        _FAMILIES[name] = cls
        return cls

    return deco


def get_family(name: str) -> "Family":
    """A fresh instance of family ``name`` or ConfigError listing the known ones."""
    try:
        return _FAMILIES[name]()
    except KeyError:
        raise ConfigError(
            f"unknown model.family {name!r}; known: {', '.join(sorted(_FAMILIES))}"
        ) from None


def list_families() -> list[str]:
    """Names of the registered families."""
    return sorted(_FAMILIES)


def _fill_data_kwargs(cls: Any, given: dict[str, Any], data: dict[str, Any], what: str) -> dict[str, Any]:
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
        return _fill_data_kwargs(
            self.generator_class(), cfg.model.generator, self.generator_data_kwargs(cfg, dataset),
            "generator",
        )

    def discriminator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        """Constructor kwargs of D: ``[model.discriminator]`` plus data-derived values."""
        return _fill_data_kwargs(
            self.discriminator_class(), cfg.model.discriminator,
            self.discriminator_data_kwargs(cfg, dataset), "discriminator",
        )

    def build_generator(self, config: dict[str, Any]) -> nn.Module:
        """G from its constructor kwargs (through the registry, as exports are loaded)."""
        from imgsynth.models.registry import build_model

        try:
            return build_model(self.arch, config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.generator: {exc}") from None

    def build_discriminator(self, config: dict[str, Any]) -> nn.Module:
        """D from its constructor kwargs."""
        cls = self.discriminator_class()
        params = inspect.signature(cls).parameters
        unknown = sorted(set(config) - set(params))
        if unknown:
            raise ConfigError(
                f"model.discriminator has no option(s) {', '.join(unknown)}; "
                f"known: {', '.join(p for p in params if p != 'self')}"
            )
        try:
            return cls(**config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.discriminator: {exc}") from None

    def init_weights(self, module: nn.Module) -> None:
        """Initialise a freshly built network (default: keep PyTorch's initialisation)."""

    #: family options (``[model.options]``) and their defaults
    option_defaults: dict[str, Any] = {}

    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        """``[model.options]`` over the family's defaults; unknown keys or other types are refused."""
        out = dict(self.option_defaults)
        for key, value in cfg.model.options.items():
            if key not in out:
                known = ", ".join(sorted(out)) or "none"
                raise ConfigError(f"model.options.{key}: the {self.name!r} family has no such option (known: {known})")
            default = out[key]
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ConfigError(f"model.options.{key} must be {type(default).__name__}, got {value!r}")
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

    # ------------------------------------------------------------ grids and exports
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
def _init_normal(module: nn.Module) -> None:
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


@register_family("dcgan")
class DCGANFamily(Family):
    """DCGAN (Radford et al. 2016): :class:`imgsynth.models.dcgan.DCGANGenerator` / ``DCGANDiscriminator``."""

    name = "dcgan"
    arch = "dcgan"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.dcgan").DCGANDiscriminator

    def init_weights(self, module: nn.Module) -> None:
        _init_normal(module)


@register_family("gan")
class GANFamily(Family):
    """The original GAN (Goodfellow et al. 2014) with MLP networks from :mod:`imgsynth.models.gan`."""

    name = "gan"
    arch = "gan"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.gan").GANDiscriminator


class _VGGLoss:
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

    def vgg_losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        """``{"vgg": lambda * L_VGG}``, or nothing when the term is off."""
        if self._vgg_net is None:
            return {}
        from imgsynth.training.losses import vgg_feature_loss

        self._vgg_net.to(fake.device)
        return {"vgg": self._vgg_weight * vgg_feature_loss(self._vgg_net, fake, target)}


@register_family("pix2pix")
class Pix2PixFamily(_VGGLoss, Family):
    """pix2pix (Isola et al. 2017): U-Net G(a) -> b, PatchGAN D on (a, b) pairs, GAN + lambda * L1.

    Set ``loss.l1 = 100`` and ``loss.gan = "vanilla"`` (their Eq. 4; the G side of our "vanilla"
    is saturating, pix2pix's BCE with real labels is ``nonsaturating``) or ``lsgan``.
    ``model.options.vgg_weights`` adds the VGG-19 perceptual loss of pix2pixHD (not in the
    pix2pix paper; see :class:`_VGGLoss`).
    """

    name = "pix2pix"
    arch = "pix2pix_unet"
    task = "translate"
    data_kind = "paired"
    feature_matching_mode = "paired"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.layers.discriminators").NLayerDiscriminator

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": int(dataset.channels_a), "output_nc": int(dataset.channels_b)}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": int(dataset.channels_a) + int(dataset.channels_b)}

    def init_weights(self, module: nn.Module) -> None:
        _init_normal(module)

    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        # pix2pix has no z: its stochasticity is dropout in G (Isola et al. 2017, Sec. 3.1)
        return (batch["a"],)

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["b"]

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        # conditional D sees the input beside the output (Eq. 1)
        return torch.cat([batch["a"].to(images.dtype), images], 1)

    def extra_g_losses(self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        terms = self.vgg_losses(fake, batch["b"])
        if cfg.loss.l1 > 0:
            terms["l1"] = cfg.loss.l1 * (fake.float() - batch["b"].float()).abs().mean()
        return terms

    def _fixed_items(self, seeds: list[int], dataset: Any) -> list[dict[str, Tensor]]:
        return [dataset[(s % len(dataset), 0)] for s in seeds]

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        """The inputs of the first dataset items (epoch-0 augmentation), one per seed."""
        return (torch.stack([item["a"] for item in self._fixed_items(seeds, dataset)]),)

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Rows of input | output | target."""
        fake = G(*inputs).float()
        items = self._fixed_items(seeds, dataset)
        target = torch.stack([item["b"] for item in items]).to(fake.device)
        a = inputs[0].float()

        def rgb(x: Tensor) -> Tensor:
            return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]

        rows = torch.stack([rgb(a), rgb(fake), rgb(target)], 1).flatten(0, 1)
        return rows, 3

    def io(self, cfg: TrainConfig, generator_config: dict[str, Any], channels: int) -> dict[str, Any]:
        io = super().io(cfg, generator_config, channels)
        # derived-input sources record their kind so that translate applies the same conversion
        derived = cfg.data.derive if cfg.data.source == "clips" else cfg.data.source
        io["input"] = derived if derived in ("edges", "gray", "clusters") else "image"
        if derived == "clusters":
            from imgsynth.pipelines.translate import CLUSTERS

            io["clusters"] = CLUSTERS
        if generator_config.get("norm", "batch") == "batch" and cfg.data.batch_size == 1:
            # trained on single images, BatchNorm acts as instance norm: keep batch statistics at test
            # time, as pix2pix's test.py does
            io["batchnorm"] = "batch"
        return io


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


def _palette(n: int) -> Tensor:
    """n fixed, well-spread RGB colours in [-1, 1] for drawing label maps in sample grids."""
    g = torch.Generator().manual_seed(1234)
    return torch.rand(n, 3, generator=g) * 2 - 1


def _uses_instances(cfg: TrainConfig, dataset: Any) -> bool:
    """Whether the label maps come with instance maps (``data.path_inst``, or a source that makes them)."""
    return bool(cfg.data.path_inst) or bool(getattr(dataset, "has_instances", False))


class LabelMapFamily(_VGGLoss, Family):
    """Label map -> image translation (pix2pixHD, SPADE): one-hot labels (+ instance edges) in.

    The data is ``source = "paired"`` with ``data.label_nc`` > 0; D sees the encoded labels beside
    the image (conditional multi-scale PatchGAN) and feature matching compares real and fake
    pairs sample by sample (pix2pixHD Eq. 4). The perceptual VGG-19 loss of both papers is on
    when ``model.options.vgg_weights`` names a local torchvision VGG-19 file (lambda
    ``model.options.vgg`` = 10; see :class:`_VGGLoss`): imgsynth does not ship those weights.
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
        terms = self.vgg_losses(fake, batch["b"])
        # neither paper has an L1 term; off unless loss.l1 > 0
        if cfg.loss.l1 > 0:
            terms["l1"] = cfg.loss.l1 * (fake.float() - batch["b"].float()).abs().mean()
        return terms

    def _fixed_items(self, seeds: list[int], dataset: Any) -> list[dict[str, Tensor]]:
        return [dataset[(s % len(dataset), 0)] for s in seeds]

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        items = self._fixed_items(seeds, dataset)
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "b"}
        ref = next(G.parameters())
        return (self._encode({k: v.to(ref.device) for k, v in batch.items()}),)

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Rows of coloured label map | output | target."""
        fake = G(*inputs).float()
        n = self._n_labels
        colours = _palette(n).to(fake.device)
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


@register_family("pix2pixhd")
class Pix2PixHDFamily(LabelMapFamily):
    """pix2pixHD (Wang et al. 2018) global generator G1 with a multi-scale discriminator.

    Paper setup: ``loss.gan = "lsgan"``, ``loss.feature_matching = 10``, D ``num_D = 2``, instance
    norm (the MultiscaleDiscriminator defaults). The local enhancer G2 and the instance-wise
    feature encoder are not trained here.
    """

    name = "pix2pixhd"
    arch = "pix2pixhd_global"

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        self._check_data(cfg, dataset)
        return {"label_nc": cfg.data.label_nc, "use_instance": bool(cfg.data.path_inst),
                "output_nc": int(dataset.channels_b)}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": cfg.data.label_nc + int(bool(cfg.data.path_inst)) + int(dataset.channels_b)}

    def init_weights(self, module: nn.Module) -> None:
        _init_normal(module)  # pix2pixHD weights_init: N(0, 0.02), norm scales N(1, 0.02)


@register_family("spade")
class SPADEFamily(LabelMapFamily):
    """SPADE (Park et al. 2019) generator with the multi-scale discriminator.

    Paper setup: ``loss.gan = "hinge"``, ``loss.feature_matching = 10``, TTUR ``g_lr = 1e-4``,
    ``d_lr = 4e-4``, ``betas = [0, 0.9]``, D with ``spectral_norm = true`` and instance norm, G
    with ``spectral_norm = true``. Square crops only (``crop_size`` = ``data.resolution``); no
    VAE style encoder (``use_vae`` must stay off); RGB targets.
    """

    name = "spade"
    arch = "spade"

    def label_channels(self, config: dict[str, Any]) -> int:
        return int(config["label_nc"]) + int(bool(config.get("contain_dontcare", True)))

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        self._check_data(cfg, dataset)
        if int(dataset.channels_b) != 3:
            raise ConfigError("the spade family makes RGB images: set data.channels = 3")
        return {"label_nc": cfg.data.label_nc, "use_instance": _uses_instances(cfg, dataset),
                "crop_size": cfg.data.resolution}

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        if config.get("use_vae"):
            raise ConfigError("the spade family does not train the VAE style encoder; remove use_vae")
        return config

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        dontcare = bool(cfg.model.generator.get("contain_dontcare", True))  # SPADEGenerator's default
        return {"input_nc": cfg.data.label_nc + int(dontcare) + int(_uses_instances(cfg, dataset)) + 3}

    def init_weights(self, module: nn.Module) -> None:
        _init_xavier(module)


@torch.no_grad()
def _init_xavier(module: nn.Module) -> None:
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


@register_family("panoptic")
class PanopticFamily(LabelMapFamily):
    """Panoptic-based image synthesis (Dundar et al. 2020): :class:`imgsynth.models.panoptic.PanopticGenerator`.

    G gets the one-hot semantic map and the panoptic id map of each item (the data must give
    ``panoptic`` maps: ``data.source = "mosaics"``); D is SPADE's conditional multi-scale
    discriminator on one-hot semantics + the instance-edge map of the panoptic ids + image, the
    input a SPADE baseline's D gets on the same data, so a comparison differs in G only. Same
    setup as the ``spade`` family (hinge, feature matching, TTUR, the VGG-19 loss when
    ``model.options.vgg_weights`` is given; no encoder).
    """

    name = "panoptic"
    arch = "panoptic"

    def label_channels(self, config: dict[str, Any]) -> int:
        return int(config["label_nc"]) + int(bool(config.get("contain_dontcare", False)))

    def _dontcare(self, cfg: TrainConfig) -> bool:
        return bool(cfg.model.generator.get("contain_dontcare", False))  # PanopticGenerator's default

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        self._check_data(cfg, dataset)
        if not getattr(dataset, "has_instances", False) or not hasattr(dataset, "mosaics"):
            raise ConfigError("the panoptic family needs panoptic maps: set data.source = \"mosaics\"")
        if int(dataset.channels_b) != 3:
            raise ConfigError("the panoptic family makes RGB images: set data.channels = 3")
        # square crops: PanopticGenerator's default aspect ratio is Cityscapes' 2.0
        return {"label_nc": cfg.data.label_nc, "crop_size": cfg.data.resolution, "aspect_ratio": 1.0}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": cfg.data.label_nc + int(self._dontcare(cfg)) + 1 + 3}

    def init_weights(self, module: nn.Module) -> None:
        _init_xavier(module)

    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        return (self._encode(batch), batch["panoptic"][:, 0])

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        from imgsynth.layers.label_maps import instance_edges

        edges = instance_edges(batch["panoptic"])
        return torch.cat([self._encode(batch).to(images.dtype), edges.to(images.dtype), images], 1)

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        items = self._fixed_items(seeds, dataset)
        ref = next(G.parameters())
        batch = {k: torch.stack([it[k] for it in items]).to(ref.device) for k in ("label", "panoptic")}
        return self.generator_inputs(G, batch, torch.Generator())


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


# ---------------------------------------------------------------- inpainting

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _imagenet(x: Tensor) -> Tensor:
    """[-1, 1] images -> ImageNet-normalised ((x01 - mean) / std), what PConv nets and VGG expect."""
    mean = torch.tensor(_IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def _from_imagenet(x: Tensor) -> Tensor:
    """Inverse of :func:`_imagenet`: back to [-1, 1] (not clamped)."""
    mean = torch.tensor(_IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * std + mean) * 2 - 1


def grow_holes(holes: Tensor, lo: float, hi: float, generator: torch.Generator) -> Tensor:
    """Add free-form strokes to (N, 1, R, R) 0/1 holes until each covers a drawn target ratio.

    Each target is uniform in [lo, hi]; the strokes are the data source's generator
    (:func:`imgsynth.training.data.free_form_mask`) seeded from ``generator``, so the result is a
    function of the run's RNG state (reproducible, and exact on resume). Holes already larger than
    their target are kept as they are.
    """
    import numpy as np

    from imgsynth.training.data import free_form_mask

    n, _, r, _ = holes.shape
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    targets = (lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)).tolist()
    out = []
    for hole, seed, target in zip(holes.cpu(), seeds, targets):
        m = hole[0].numpy() > 0.5
        rng = np.random.default_rng(seed)
        while m.mean() < target:
            m |= free_form_mask(r, rng).astype(bool)
        out.append(torch.from_numpy(m))
    return torch.stack(out)[:, None].to(holes.device, holes.dtype)


class _ConstantCritic(nn.Module):
    """One learnable logit that ignores the image: the PConv family's stand-in discriminator.

    Liu et al. 2018 train without an adversarial loss, but the shared loop always takes a
    discriminator step. This critic's output does not depend on G's output, so the adversarial
    term gives G exactly zero gradient (for every ``loss.gan``) and costs nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        """(N, ...) -> (N,) copies of the logit."""
        return self.logit.expand(x.shape[0])


def _pconv_for_training() -> type:
    """A PConvUNet whose forward returns only the image (the loop expects G(...) -> tensor).

    A subclass, so its state dict is exactly ``pconv_unet``'s and exports load into the
    registered class.
    """
    from imgsynth.models.pconv import PConvUNet

    class PConvUNetTrain(PConvUNet):
        def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
            """(N, 3, H, W) masked ImageNet-normalised image, (N, 3, H, W) mask -> (N, 3, H, W) output."""
            return super().forward(x, mask)[0]

    return PConvUNetTrain


@register_family("pconv")
class PConvFamily(Family):
    """PConv U-Net inpainting (Liu et al. 2018) on ``source = "masked"`` photos.

    G sees the ImageNet-normalised photo with its holes zeroed and the 3-channel mask (1 = known),
    as the released checkpoints and :mod:`imgsynth.pipelines.inpaint` do. The loss is the paper's
    (Eq. 1-7, :func:`imgsynth.training.losses.inpainting_losses`): ``valid`` + ``hole`` * L_hole +
    ``perceptual`` * L_perceptual + ``style`` * (L_style_out + L_style_comp) + ``tv`` * L_tv, with
    the VGG-16 terms only when ``vgg_weights`` names a local torchvision VGG-16 file (ImageNet
    weights cannot be downloaded here). ``ssim`` > 0 adds ``ssim`` * (1 - SSIM) of the composited
    luminance, a structure term that needs no pretrained network (not in the paper); ``border`` > 0
    adds ``border`` * L1 over the hole pixels within ``border_px`` pixels of the known region (not
    in the paper either: that band is where a fill must continue the surrounding structure).

    Holes: the data source's seeded free-form hole, grown with more strokes until it covers a
    ratio drawn uniformly from [``min_hole``, ``max_hole``] (0 and 0: the data's holes as they are).

    Two-stage schedule (Sec. 4.1): stage 1 trains from scratch at lr 2e-4; stage 2 is a second run
    with ``init_from`` = a stage-1 checkpoint, ``freeze_encoder_bn = true`` (encoder BatchNorm uses
    its running statistics) and ``optim.g_lr = 5e-5``. It is a second run because the loop does not
    hand optimisers to families; the new run starts a fresh Adam state. ``init_from`` also takes an
    exported model folder or an inpainting card id, to fine-tune a released or bundled network;
    ``freeze_decoder_bn = true`` (not in the paper) freezes the decoder's BatchNorm too, so the
    network trains exactly the function it computes at inference.

    There is no adversarial term: D is a constant critic (:class:`_ConstantCritic`), so the logged
    ``d`` and ``g`` values are constants.
    """

    name = "pconv"
    arch = "pconv_unet"
    task = "inpaint"
    data_kind = "masked"
    option_defaults = {
        "valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1, "ssim": 0.0,
        "border": 0.0, "border_px": 3, "vgg_weights": "", "min_hole": 0.0, "max_hole": 0.0,
        "freeze_encoder_bn": False, "freeze_decoder_bn": False, "init_from": "",
    }

    def __init__(self) -> None:
        self._opts: dict[str, Any] | None = None
        self._vgg: nn.Module | None = None

    # ------------------------------------------------------------ building
    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        opts = super().options(cfg)
        if not 0.0 <= opts["min_hole"] <= opts["max_hole"] < 1.0:
            raise ConfigError("model.options: need 0 <= min_hole <= max_hole < 1")
        for key in ("valid", "hole", "perceptual", "style", "tv", "ssim", "border"):
            if opts[key] < 0:
                raise ConfigError(f"model.options.{key} must not be negative")
        if not isinstance(opts["border_px"], int) or opts["border_px"] < 1:
            raise ConfigError("model.options.border_px must be a whole number of pixels >= 1")
        if cfg.data.channels not in (0, 3):
            raise ConfigError("the pconv family inpaints RGB photos: set data.channels = 3 (or 0)")
        if opts["vgg_weights"]:
            from imgsynth.training.losses import VGG16Features

            self._vgg = VGG16Features.from_file(opts["vgg_weights"])
        self._opts = opts
        return opts

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        if int(dataset.channels) != 3:
            raise ConfigError("the pconv family inpaints RGB photos: set data.channels = 3")
        return {"input_channels": 3}

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        step = 2 ** int(config.get("layer_size", 7))
        if cfg.data.resolution % step:
            raise ConfigError(
                f"data.resolution {cfg.data.resolution} must be a multiple of 2**layer_size = {step}"
            )
        return config

    def discriminator_class(self) -> Any:
        return _ConstantCritic

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {}

    def build_generator(self, config: dict[str, Any]) -> nn.Module:
        try:
            return _pconv_for_training()(**config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.generator: {exc}") from None

    def init_weights(self, module: nn.Module) -> None:
        """Kaiming init of the convolutions (naoto0804's ``weights_init('kaiming')``), or the
        weights of the ``init_from`` checkpoint (stage 2), and the encoder BN freeze."""
        from imgsynth.models.pconv import PConvUNet

        if not isinstance(module, PConvUNet):
            return
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        opts = self._opts or self.option_defaults
        if opts["init_from"]:
            weights = self._init_weights(str(opts["init_from"]))
            try:
                module.load_state_dict(weights)
            except RuntimeError as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                raise ConfigError(  # the first mismatch, not torch's "Error(s) in loading" header
                    f"model.options.init_from: the weights do not fit [model.generator] ({lines[min(1, len(lines) - 1)][:200]})"
                ) from None
        module.freeze_bn(encoder=bool(opts["freeze_encoder_bn"]), decoder=bool(opts["freeze_decoder_bn"]))

    def _init_weights(self, source: str) -> dict[str, Tensor]:
        """The generator weights named by ``init_from``: a training checkpoint (file or run
        folder; its EMA generator when it has one), an exported model folder, or an inpainting
        card id such as ``pconv-photos-256`` (fp16 weights come back as fp32)."""
        from imgsynth.engine.loading import load_model
        from imgsynth.training.checkpoint import load_checkpoint

        path = Path(source)
        export = path.is_dir() and (path / "config.json").is_file()
        if not export and (path.exists() or "/" in source or path.suffix == ".safetensors"):
            state = load_checkpoint(path)
            if state.get("arch") != self.arch:
                raise ConfigError(f"model.options.init_from: {source!r} is not a pconv checkpoint")
            return state["G_ema"] if state.get("G_ema") is not None else state["G"]
        if export:
            loaded = load_model("inpaint", weights=path)
        else:
            try:
                loaded = load_model("inpaint", model=source, offline=True)
            except ImgsynthError as exc:
                raise ConfigError(f"model.options.init_from: {source!r}: {exc}") from None
        if loaded.arch != self.arch:
            raise ConfigError(f"model.options.init_from: {source!r} is a {loaded.arch!r} model, not {self.arch!r}")
        return {k: v.float() if v.is_floating_point() else v for k, v in loaded.model.state_dict().items()}

    # ------------------------------------------------------------ one step
    def _inputs(self, batch: dict[str, Tensor], holes: Tensor) -> tuple[Tensor, Tensor]:
        gt = _imagenet(batch["image"].float())
        mask = (1.0 - holes).expand(-1, 3, -1, -1).contiguous()
        return gt * mask, mask

    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        """(masked ImageNet-normalised photos, masks); the holes used are kept in ``batch["used_hole"]``."""
        opts = self._opts or self.option_defaults
        holes = batch["hole"].float()
        if opts["max_hole"] > 0:
            holes = grow_holes(holes, opts["min_hole"], opts["max_hole"], generator)
        batch["used_hole"] = holes
        return self._inputs(batch, holes)

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        return images[:, :1, :1, :1]  # the constant critic looks at nothing

    def extra_g_losses(self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        from imgsynth.training.losses import inpainting_losses, ssim_loss

        opts = self._opts or self.option_defaults
        gt = _imagenet(batch["image"].float())
        mask = 1.0 - batch["used_hole"]
        if self._vgg is not None:
            self._vgg.to(fake.device)
        terms = inpainting_losses(
            fake, gt, mask, valid=opts["valid"], hole=opts["hole"], tv=opts["tv"],
            perceptual=opts["perceptual"], style=opts["style"], vgg=self._vgg,
            border=opts["border"], border_px=opts["border_px"],
        )
        if opts["ssim"] > 0:
            comp = mask * gt + (1 - mask) * fake.float()
            terms["ssim"] = opts["ssim"] * ssim_loss(
                ((_from_imagenet(comp) + 1) / 2), ((batch["image"].float() + 1) / 2)
            )
        return terms

    # ------------------------------------------------------------ grids and exports
    def _fixed_items(self, seeds: list[int], dataset: Any) -> list[dict[str, Tensor]]:
        return [dataset[(s % len(dataset), 0)] for s in seeds]

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        """The first dataset items (epoch 0) with their seeded holes, one per seed."""
        items = self._fixed_items(seeds, dataset)
        batch = {"image": torch.stack([it["image"] for it in items])}
        return self._inputs(batch, torch.stack([it["hole"] for it in items]))

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Rows of input with holes (grey) | composited result | original."""
        x, mask = inputs
        out = G(x, mask).float()
        comp = mask * x + (1 - mask) * out
        target = torch.stack([it["image"] for it in self._fixed_items(seeds, dataset)]).to(out.device)
        shown = _from_imagenet(x) * mask
        rows = [shown, _from_imagenet(comp).clamp(-1, 1), target.float()]
        return torch.stack(rows, 1).flatten(0, 1), 3

    def io(self, cfg: TrainConfig, generator_config: dict[str, Any], channels: int) -> dict[str, Any]:
        return {"normalization": "imagenet", "resolution": cfg.data.resolution, "image_channels": channels}


# families in their own modules register themselves on import
from imgsynth.training import family_vid2vid as _family_vid2vid  # noqa: E402,F401
