"""The ``pconv`` training family: inpainting with partial convolutions (Liu et al. 2018), :mod:`imgsynth.models.pconv`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError, ImgsynthError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family


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
    in the paper either: that band is where a fill must continue the surrounding structure);
    ``lowpass`` > 0 adds ``lowpass`` * the mean squared error between the ``lowpass_px`` x
    ``lowpass_px`` block means of the composited result and of the photo (:func:`~imgsynth.training.
    losses.lowpass_mse`; not in the paper): an L1 fill of a skewed texture (dark moss with bright
    leaves) takes its median, darker than its mean, and a squared error on local means pulls the
    fill's low frequencies to the mean.

    Holes: the data source's seeded free-form hole, grown with more strokes until it covers a
    ratio drawn uniformly from [``min_hole``, ``max_hole``] (0 and 0: the data's holes as they are).

    Two-stage schedule (Sec. 4.1): stage 1 trains from scratch at lr 2e-4; stage 2 is a second run
    with ``init_from`` = a stage-1 checkpoint, ``freeze_encoder_bn = true`` (encoder BatchNorm uses
    its running statistics) and ``optim.g_lr = 5e-5``. It is a second run because the loop does not
    hand optimisers to families; the new run starts a fresh Adam state. ``init_from`` also takes an
    exported model folder or an inpainting card id, to fine-tune a released or bundled network;
    ``freeze_decoder_bn = true`` (not in the paper) freezes the decoder's BatchNorm too, so the
    network trains exactly the function it computes at inference.

    Adversarial term (not in the paper; ``adversarial`` > 0): a PatchGAN (:class:`~imgsynth.layers.
    discriminators.NLayerDiscriminator`) judges the composited result (known pixels of the photo,
    G's output in the hole) against the photo, each with the hole mask as a fourth channel, so that
    its patch logits can tell where the fill is; G's loss gets ``adversarial`` * the ``loss.gan``
    generator loss. Default D (``[model.discriminator]`` overrides each key): ``ndf = 32``,
    ``n_layers = 3`` (70x70 patches), ``max_channels = 128``, no normalisation and spectral norm on
    every conv, as the SN-PatchGAN of DeepFill v2 (Yu et al., ICCV 2019), whose hinge loss
    (``loss.gan = "hinge"``) the recipes use. The logged ``g`` is the unweighted generator loss.

    With ``adversarial = 0`` (the default) there is no adversarial term: D is a constant critic
    (:class:`_ConstantCritic`), so the logged ``d`` and ``g`` values are constants.
    """

    name = "pconv"
    arch = "pconv_unet"
    task = "inpaint"
    data_kind = "masked"
    adversarial = False
    option_defaults = {
        "valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1, "ssim": 0.0,
        "border": 0.0, "border_px": 3, "lowpass": 0.0, "lowpass_px": 8, "vgg_weights": "",
        "min_hole": 0.0, "max_hole": 0.0,
        "freeze_encoder_bn": False, "freeze_decoder_bn": False, "init_from": "", "adversarial": 0.0,
    }
    #: the PatchGAN of ``adversarial`` > 0 unless ``[model.discriminator]`` says otherwise
    patchgan_defaults = {"ndf": 32, "n_layers": 3, "max_channels": 128, "norm": "none", "spectral_norm": True}

    def __init__(self) -> None:
        self._opts: dict[str, Any] | None = None
        self._vgg: nn.Module | None = None

    # ------------------------------------------------------------ building
    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        opts = super().options(cfg)
        if not 0.0 <= opts["min_hole"] <= opts["max_hole"] < 1.0:
            raise ConfigError("model.options: need 0 <= min_hole <= max_hole < 1")
        for key in ("valid", "hole", "perceptual", "style", "tv", "ssim", "border", "lowpass", "adversarial"):
            if opts[key] < 0:
                raise ConfigError(f"model.options.{key} must not be negative")
        if not isinstance(opts["border_px"], int) or opts["border_px"] < 1:
            raise ConfigError("model.options.border_px must be a whole number of pixels >= 1")
        if not isinstance(opts["lowpass_px"], int) or opts["lowpass_px"] < 2:
            raise ConfigError("model.options.lowpass_px must be a whole number of pixels >= 2")
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

    def _adversarial(self) -> bool:
        return bool((self._opts or self.option_defaults)["adversarial"] > 0)

    def adversarial_weight(self, options: dict[str, Any]) -> float:
        return float(options["adversarial"]) if options["adversarial"] > 0 else 1.0

    def discriminator_class(self) -> Any:
        if self._adversarial():
            from imgsynth.layers.discriminators import NLayerDiscriminator

            return NLayerDiscriminator
        return _ConstantCritic

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": 4} if self._adversarial() else {}  # RGB + the hole

    def discriminator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        if not self._adversarial():
            return super().discriminator_config(cfg, dataset)
        from imgsynth.training.families.base import fill_data_kwargs

        given = {**self.patchgan_defaults, **cfg.model.discriminator}
        return fill_data_kwargs(self.discriminator_class(), given,
                                 self.discriminator_data_kwargs(cfg, dataset), "discriminator")

    def build_generator(self, config: dict[str, Any]) -> nn.Module:
        from imgsynth.training.families.base import construct

        return construct(_pconv_for_training(), config, "generator")

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

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        """The photo, ImageNet-normalised like G's output."""
        return _imagenet(batch["image"].float())

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        """The composited image (photo outside the hole, ``images`` inside) and the hole, for the
        PatchGAN; nothing for the constant critic."""
        if not self._adversarial():
            return images[:, :1, :1, :1]  # the constant critic looks at nothing
        hole = batch["used_hole"].to(images.dtype)
        comp = hole * images + (1 - hole) * _imagenet(batch["image"].to(images.dtype))
        return torch.cat([comp, hole * 2 - 1], 1)

    def extra_g_losses(self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        from imgsynth.training.losses import inpainting_losses, lowpass_mse, ssim_loss

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
        comp = mask * gt + (1 - mask) * fake.float()  # the photo with G's fill in its holes
        if opts["ssim"] > 0:
            terms["ssim"] = opts["ssim"] * ssim_loss(
                ((_from_imagenet(comp) + 1) / 2), ((batch["image"].float() + 1) / 2)
            )
        if opts["lowpass"] > 0:
            terms["lowpass"] = opts["lowpass"] * lowpass_mse(comp, gt, opts["lowpass_px"])
        return terms

    def validation_pair(
        self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Tensor] | None:
        """The composited fill (known pixels kept) against the photo."""
        x, mask = self.generator_inputs(G, batch, generator)
        out = G(x, mask).float()
        return _from_imagenet(mask * x + (1 - mask) * out), batch["image"].float()

    # ------------------------------------------------------------ grids and exports
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
