"""GAN-zoo Progressive GAN checkpoints -> :class:`imgsynth.models.progan.ProGANGenerator`.

The torch.hub ``PGAN`` files (facebookresearch/pytorch_GAN_zoo, e.g. ``celebaHQ_s6_i80000-6196db68.pth``)
hold ``{'config', 'netG', 'netD', 'avgG'}``; ``netG`` and ``avgG`` (the moving average the hub's
``test(getAvG=True)`` uses) have identical keys. imgsynth keeps the GAN-zoo parameter names, so the
conversion selects and validates the generator state dict. Depths, latent size and number of scales
are read off the tensor shapes; the loss mode (output activation), pixel norm and leaky-ReLU slope
come from the checkpoint's ``config`` when it was deserialised (a dict or an attribute object),
otherwise the released values (WGAN-GP -> no output activation, pixel norm, slope 0.2) are assumed.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from imgsynth.convert import check_state_dict
from imgsynth.errors import WeightsError

__all__ = ["from_ganzoo", "infer_config"]

_SCALE_KEY = re.compile(r"^scaleLayers\.(\d+)\.0\.module\.weight$")


def _generator_state(checkpoint: dict[str, Any], use_avg: bool) -> dict[str, Tensor]:
    """The generator state dict inside a GAN-zoo checkpoint, or the checkpoint itself if bare."""
    if "netG" in checkpoint or "avgG" in checkpoint:
        key = "avgG" if use_avg else "netG"
        if key not in checkpoint:
            raise WeightsError(f"GAN-zoo checkpoint has no {key!r} entry (has {sorted(checkpoint)})")
        state = checkpoint[key]
    else:
        state = checkpoint
    if not isinstance(state, dict) or "formatLayer.module.weight" not in state:
        raise WeightsError(
            "not a GAN-zoo PGAN generator: expected 'formatLayer.module.weight' in the checkpoint "
            "or in its 'netG'/'avgG' entry"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _zoo_option(checkpoint: dict[str, Any], name: str) -> Any:
    config = checkpoint.get("config")
    if isinstance(config, dict):
        return config.get(name)
    return getattr(config, name, None)


def infer_config(
    checkpoint: dict[str, Any], *, loss_mode: str | None = None, pixel_norm: bool | None = None,
    leaky_relu_leak: float | None = None,
) -> dict[str, Any]:
    """Constructor config of ``progan`` for a GAN-zoo PGAN checkpoint (full dict or bare netG).

    A full checkpoint records ``lossCriterion``, ``perChannelNormalization`` and ``leakyReluLeak``
    in its ``config``; a bare generator state dict does not, so they can be given here
    (``loss_mode`` is the zoo's ``lossMode``/``lossCriterion``: WGANGP, MSE, DCGAN, ...); a given
    value wins over the recorded one.
    """
    state = _generator_state(checkpoint, use_avg=False)
    try:
        z_dim = int(state["formatLayer.module.weight"].shape[1])
        channels = [int(state["groupScale0.0.module.weight"].shape[0])]
        scales = sorted(int(m.group(1)) for k in state if (m := _SCALE_KEY.match(k)))
        if scales != list(range(len(scales))):
            raise WeightsError(f"PGAN checkpoint has non-contiguous scaleLayers indices {scales}")
        channels += [int(state[f"scaleLayers.{i}.0.module.weight"].shape[0]) for i in scales]
        img_channels = int(state["toRGBLayers.0.module.weight"].shape[0])
    except KeyError as err:
        raise WeightsError(f"PGAN checkpoint lacks {err.args[0]!r}") from None
    loss = loss_mode if loss_mode is not None else _zoo_option(checkpoint, "lossCriterion")
    if pixel_norm is None:
        pixel_norm = _zoo_option(checkpoint, "perChannelNormalization")
    slope = leaky_relu_leak if leaky_relu_leak is not None else _zoo_option(checkpoint, "leakyReluLeak")
    return {
        "z_dim": z_dim,
        "channels": channels,
        "img_channels": img_channels,
        "negative_slope": 0.2 if slope is None else float(slope),
        "use_pixel_norm": True if pixel_norm is None else bool(pixel_norm),
        # GAN-zoo losses: WGANGP has no generation activation, MSE and DCGAN use tanh.
        "output_activation": "tanh" if loss in ("MSE", "DCGAN") else "none",
    }


def from_ganzoo(checkpoint: dict[str, Any], config: dict[str, Any], *, use_avg: bool = False) -> dict[str, Tensor]:
    """GAN-zoo PGAN checkpoint -> state dict for ``build_model("progan", config)``.

    Args:
        checkpoint: the deserialised ``.pth`` (``{'config', 'netG', 'netD', 'avgG'}``) or a bare
            generator state dict.
        config: ``progan`` constructor kwargs, e.g. from :func:`infer_config`.
        use_avg: take the moving-average generator ``avgG`` instead of ``netG``.

    Raises:
        WeightsError: missing, unexpected or mis-shaped tensors.
    """
    state = _generator_state(checkpoint, use_avg)
    return check_state_dict(state, "progan", config, "PGAN checkpoint")
