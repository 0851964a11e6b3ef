"""StyleGAN (v1) PyTorch-port checkpoints -> :class:`imgsynth.models.stylegan.StyleGANGenerator`.

NVIDIA released StyleGAN v1 only as TensorFlow pickles. The PyTorch checkpoints in use come from two
ports, whose generator code and file layout this module reproduces:

**mmgen** (open-mmlab/mmgeneration ``StyleGANv1Generator``, Apache-2.0; mmagic keeps the same module
names and lists the same files in ``configs/styleganv1/metafile.yml``). Released: FFHQ 256 and 1024,
``{'meta', 'state_dict', ...}`` with the whole GAN in ``state_dict``: ``generator.*``,
``generator_ema.*`` (mmagic 1.x saves ``generator_ema.module.*``), ``discriminator.*`` and
bookkeeping buffers. Generator keys (block i at resolution 4 * 2**i):

- ``style_mapping.{1..8}.linear.weight_orig`` (W, W) and ``style_mapping.{1..8}.bias``: pixel norm
  ``x / (||x|| / sqrt(C) + 1e-6)``, then linear with weight ``w * 1 / sqrt(fan_in) * 0.01`` (gain 1,
  lr multiplier 0.01) and bias ``b * 0.01``, lrelu 0.2;
- ``convs.0.conv1.input`` (1, 512, 4, 4): the constant, followed by noise, lrelu, AdaIN (no bias);
- ``convs.i.conv1.0.conv.{weight_orig, bias}`` (i > 0): nearest x2, 3x3 conv with weight
  ``w * sqrt(2 / fan_in)`` and unscaled bias, lrelu 0.2, then ``convs.i.conv1.1.kernel`` (3, 3), the
  normalised [1, 2, 1] blur with zero padding 1, then noise, lrelu, AdaIN;
- ``convs.i.conv2.conv.{weight_orig, bias}``: 3x3 conv (same scaling) -> noise -> lrelu -> AdaIN;
- ``convs.i.noise_injector{1,2}.weight`` (1,): one noise strength per layer, not per channel;
- ``convs.i.adain{1,2}.affine.{weight_orig, bias}`` (2C, W): linear with weight ``w * sqrt(2 / W)``,
  unscaled bias (initialised to 1 for the scale half); ``gamma * instance_norm(x) + beta`` with
  ``nn.InstanceNorm2d`` (eps 1e-5) and no ``+ 1``;
- ``to_rgbs.i.conv.{weight_orig, bias}`` (3, C, 1, 1): 1x1 conv with weight ``w * sqrt(2 / C)``;
  only the last one makes the full-resolution image;
- ``injected_noise_{j}`` (1, 1, R, R): the fixed noise maps (``randomize_noise=False``), two per block.

The truncation centre is not stored: mmgen averages the mapping over 4096 random z when first asked.

**rosinality** (rosinality/style-based-gan-pytorch, MIT; its FFHQ checkpoints are Google Drive files).
``generate.py`` loads ``torch.load(path)['g_running']`` (the training file also holds ``generator``,
``discriminator`` and the optimizers; the older running-average files are the bare state dict). The
generator always has all nine blocks (4 to 1024) whatever resolution it was trained to:

- ``style.{1,3,..,15}.linear.{weight_orig, bias}``: pixel norm ``x / sqrt(mean(x^2) + 1e-8)``, linear
  with weight ``w * sqrt(2 / fan_in)``, unscaled bias (the 0.01 is applied by the optimizer), lrelu;
- ``generator.progression.0.conv1.input`` (1, 512, 4, 4);
- blocks 1-4: ``conv1.1.conv.{weight_orig, bias}`` (nearest x2, 3x3 conv) and ``conv1.2.{weight,
  weight_flip}`` (C, 1, 3, 3) blur buffers; blocks 5-8 (``fused``): ``conv1.0.{weight, bias}`` with a
  (Cin, Cout, 3, 3) transposed-conv weight, ``sqrt(2 / (Cin * 9))``, padded 4-shift sum ``/ 4``, stride
  2, padding 1, then ``conv1.1.{weight, weight_flip}``; the conv bias comes before the blur;
- ``conv2.conv.{weight_orig, bias}``; ``noise{1,2}.weight_orig`` (1, C, 1, 1), scaled by
  ``sqrt(2 / C)``; order conv -> noise -> lrelu -> AdaIN;
- ``adain{1,2}.style.linear.{weight_orig, bias}``: as mmgen's affine (gain sqrt 2, no ``+ 1``,
  ``nn.InstanceNorm2d``);
- ``generator.to_rgb.i.conv.{weight_orig, bias}`` with ``sqrt(2 / C)``.

One noise map per resolution feeds both layers of a block; no noise map and no mean w are stored
(``generate.py`` averages the mapping over 10 x 1024 random z).

Scalar constants are folded into the stored weights (exact up to float rounding); the structural
differences are model options (``up_layer_order``, ``norm_eps``, ``shared_block_noise``). The missing
truncation centre is estimated here from a fixed-seed batch of z, and rosinality's missing noise maps
are drawn from a fixed seed, so a conversion is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from imgsynth.convert.pix2pix import full_config
from imgsynth.errors import WeightsError
from imgsynth.models.stylegan import StyleGANGenerator, StyleGANMapping

__all__ = ["from_mmgen", "from_rosinality", "infer_config"]

SQRT2 = math.sqrt(2.0)
MMGEN_LR_MLP = 0.01  # StyleGANv1Generator's lr_mlp default; the released configs keep it
ROSINALITY_BLOCKS = 9  # Generator.progression: 4x4 ... 1024x1024, always all of them
ROSINALITY_FUSED_FROM = 5  # blocks 128x128 and up use FusedUpsample
_MMGEN_EMA = ("generator_ema.module.", "generator_ema.")


# --- shared -----------------------------------------------------------------------------------------


def _blur_kernel() -> Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum()


def _channels(config: dict[str, Any], r: int) -> int:
    return min(config["fmap_base"] // (r // 2), config["fmap_max"])


def _resolutions(img_resolution: int) -> list[int]:
    return [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]


def _fmap(channels: dict[int, int], what: str) -> dict[str, int]:
    """``fmap_base`` / ``fmap_max`` reproducing the channel count of each resolution.

    The ports hard-code the table {4..32: 512, 64: 256, ..., 1024: 16}, which is the rule with 8192
    and 512; reading it off the shapes also covers reduced test networks.
    """
    fmap_max = channels[4]
    fmap_base = fmap_max * (max(channels) // 2)
    for r in sorted(channels):
        if channels[r] < fmap_max:
            fmap_base = channels[r] * (r // 2)
            break
    if any(min(fmap_base // (r // 2), fmap_max) != c for r, c in channels.items()):
        raise WeightsError(f"{what} channels {channels} follow no min(fmap_base / (r / 2), fmap_max) rule")
    return {"fmap_base": fmap_base, "fmap_max": fmap_max}


def _mapping_shapes(config: dict[str, Any]) -> list[tuple[int, int]]:
    """(out, in) of each mapping layer."""
    n, f = config["mapping_layers"], config["mapping_features"]
    dims = [config["z_dim"]] + [f] * (n - 1) + [config["w_dim"]]
    return [(dims[i + 1], dims[i]) for i in range(n)]


def _tensor_state(state: Any, what: str) -> dict[str, Tensor]:
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{what} is not a state dict of tensors")
    return state


def _check(state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], what: str) -> None:
    """Strict key and shape check of a state dict against the layout a config implies."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise WeightsError(
            f"{what} does not fit the config: missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise WeightsError(f"{what} tensor {key} has shape {tuple(state[key].shape)}, config expects {shape}")


def _check_blur(state: dict[str, Tensor], keys: list[str], what: str) -> None:
    """Blur buffers must hold the [1, 2, 1] kernel the model applies; other kernels are refused."""
    ref = _blur_kernel()
    for key in keys:
        t = state[key].float()
        if not torch.allclose(t, ref.expand_as(t), atol=1e-6):
            raise WeightsError(f"{what} blur {key} is not the normalised [1, 2, 1] kernel imgsynth implements")


def _mapping(weights: list[Tensor], biases: list[Tensor], weight_factor: float,
             bias_factor: float) -> dict[str, Tensor]:
    out = {}
    for i, (w, b) in enumerate(zip(weights, biases)):
        out[f"mapping.fc{i}.module.weight"] = w.float() * weight_factor
        out[f"mapping.fc{i}.module.bias"] = b.float() * bias_factor
    return out


def _mean_w(config: dict[str, Any], out: dict[str, Tensor], samples: int, seed: int) -> Tensor:
    """Mean of the converted mapping over ``samples`` standard-normal z from a fixed seed (truncation centre)."""
    net = StyleGANMapping(config["z_dim"], 0, config["w_dim"], 1, num_layers=config["mapping_layers"],
                          layer_features=config["mapping_features"],
                          lr_multiplier=config["mapping_lr_multiplier"]).eval()
    mapping = {k.removeprefix("mapping."): v for k, v in out.items() if k.startswith("mapping.fc")}
    net.load_state_dict({**mapping, "w_avg": torch.zeros(config["w_dim"])}, strict=True)
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(config["w_dim"], dtype=torch.float64)
    done = 0
    with torch.no_grad():
        while done < samples:
            n = min(1024, samples - done)
            total += net(torch.randn(n, config["z_dim"], generator=gen))[:, 0].double().sum(0)
            done += n
    return (total / samples).float()


def _layer(name: str, weight: Tensor | None, bias: Tensor, strength: Tensor, noise: Tensor, style_weight: Tensor,
           style_bias: Tensor) -> dict[str, Tensor]:
    """One imgsynth style layer. The ports' AdaIN affine has gain sqrt 2 and uses gamma as is;
    imgsynth's has gain 1 and adds 1 to the scale half."""
    c = style_bias.shape[0] // 2
    style_bias = style_bias.float().clone()
    style_bias[:c] -= 1
    out = {f"{name}.bias": bias.float(), f"{name}.noise_strength": strength.float(),
           f"{name}.noise_const": noise.float(), f"{name}.style.module.weight": style_weight.float() * SQRT2,
           f"{name}.style.module.bias": style_bias}
    if weight is not None:
        out[f"{name}.conv.module.weight"] = weight.float()
    return out


def _finish(config: dict[str, Any], out: dict[str, Tensor], samples: int, seed: int) -> dict[str, Tensor]:
    """Add the truncation centre, check against the target network, one contiguous fp32 tensor per key."""
    out["mapping.w_avg"] = _mean_w(config, out, samples, seed)
    with torch.device("meta"):
        expected = StyleGANGenerator(**config).state_dict()
    _check(out, {k: tuple(v.shape) for k, v in expected.items()}, "converted StyleGAN state")
    # safetensors refuses tensors that share memory (shared noise maps, expanded strengths).
    return {k: out[k].detach().to(torch.float32).clone(memory_format=torch.contiguous_format) for k in expected}


# --- mmgen / mmagic -----------------------------------------------------------------------------------


def _mmgen_layout(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an mmgen ``StyleGANv1Generator`` for ``config`` (generator keys, no prefix)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (o, n) in enumerate(_mapping_shapes(config), start=1):
        shapes[f"style_mapping.{i}.linear.weight_orig"] = (o, n)
        shapes[f"style_mapping.{i}.bias"] = (o,)
    res = _resolutions(config["img_resolution"])
    for i, r in enumerate(res):
        c = _channels(config, r)
        p = f"convs.{i}"
        if i == 0:
            shapes[f"{p}.conv1.input"] = (1, c, 4, 4)
        else:
            shapes[f"{p}.conv1.0.conv.weight_orig"] = (c, _channels(config, r // 2), 3, 3)
            shapes[f"{p}.conv1.0.conv.bias"] = (c,)
            shapes[f"{p}.conv1.1.kernel"] = (3, 3)
        for j in (1, 2):
            shapes[f"{p}.noise_injector{j}.weight"] = (1,)
            shapes[f"{p}.adain{j}.affine.weight_orig"] = (2 * c, config["w_dim"])
            shapes[f"{p}.adain{j}.affine.bias"] = (2 * c,)
        shapes[f"{p}.conv2.conv.weight_orig"] = (c, c, 3, 3)
        shapes[f"{p}.conv2.conv.bias"] = (c,)
        shapes[f"to_rgbs.{i}.conv.weight_orig"] = (config["img_channels"], c, 1, 1)
        shapes[f"to_rgbs.{i}.conv.bias"] = (config["img_channels"],)
    for j in range(2 * len(res)):
        r = 2 ** ((j + 4) // 2)
        shapes[f"injected_noise_{j}"] = (1, 1, r, r)
    return shapes


def _mmgen_generator(checkpoint: dict[str, Any], use_ema: bool) -> dict[str, Tensor]:
    """The generator (or its EMA) inside an mmgen/mmagic checkpoint, or the checkpoint itself if bare."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise WeightsError("mmgen checkpoint: 'state_dict' is not a dict")
    if "style_mapping.1.linear.weight_orig" in state:
        return _tensor_state(state, "mmgen generator")
    for prefix in _MMGEN_EMA if use_ema else ("generator.",):
        if f"{prefix}style_mapping.1.linear.weight_orig" in state:
            # mmagic's EMA wrapper adds a step counter beside the averaged module
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k != f"{prefix}steps"}
            return _tensor_state(sub, f"mmgen {prefix[:-1]}")
    which = "generator_ema" if use_ema else "generator"
    hint = " (pass use_ema=False for a file without EMA)" if use_ema else ""
    raise WeightsError(f"not an mmgen/mmagic StyleGANv1 file: no '{which}.style_mapping.1.linear.weight_orig'{hint}")


def _infer_mmgen(state: dict[str, Tensor]) -> dict[str, Any]:
    try:
        w, z = (int(s) for s in state["style_mapping.1.linear.weight_orig"].shape)
        n_mlp = sum(1 for k in state if k.startswith("style_mapping.") and k.endswith(".linear.weight_orig"))
        blocks = sum(1 for k in state if k.startswith("convs.") and k.endswith(".conv2.conv.weight_orig"))
        img_channels = int(state[f"to_rgbs.{blocks - 1}.conv.weight_orig"].shape[0])
        channels = {4 * 2**i: int(state[f"convs.{i}.conv2.conv.weight_orig"].shape[0]) for i in range(blocks)}
    except (KeyError, ValueError):
        raise WeightsError("mmgen StyleGANv1 generator lacks its mapping, convs or to_rgbs tensors") from None
    return {
        "z_dim": z, "c_dim": 0, "w_dim": w, "img_resolution": 2 ** (blocks + 1), "img_channels": img_channels,
        "mapping_layers": n_mlp, "mapping_features": w, "mapping_lr_multiplier": MMGEN_LR_MLP,
        **_fmap(channels, "mmgen StyleGANv1 generator"),
        "up_layer_order": "conv_bias_lrelu_blur", "norm_eps": 1e-5, "shared_block_noise": False,
    }


def _mmgen_layer(state: dict[str, Tensor], p: str, j: int, c: int, noise: Tensor, name: str,
                 weight: Tensor | None, bias: Tensor) -> dict[str, Tensor]:
    # one scalar noise strength per layer, broadcast to imgsynth's per-channel strengths
    return _layer(name, weight, bias, state[f"{p}.noise_injector{j}.weight"].expand(c), noise,
                  state[f"{p}.adain{j}.affine.weight_orig"], state[f"{p}.adain{j}.affine.bias"])


def from_mmgen(
    checkpoint: dict[str, Any], config: dict[str, Any], *, use_ema: bool = True, w_avg_samples: int = 4096,
    w_avg_seed: int = 0,
) -> dict[str, Tensor]:
    """mmgen / mmagic StyleGANv1 checkpoint -> state dict for ``build_model("stylegan", config)``.

    Args:
        checkpoint: the deserialised ``.pth`` (``{'meta', 'state_dict', ...}``), its ``state_dict``, or a
            bare generator state dict.
        config: ``stylegan`` constructor kwargs, e.g. from :func:`infer_config` (the mmgen options
            ``up_layer_order='conv_bias_lrelu_blur'``, ``norm_eps=1e-5`` give the same images).
        use_ema: take ``generator_ema`` (what mmgen samples and evaluates with) instead of ``generator``.
        w_avg_samples, w_avg_seed: the truncation centre is the mapping's mean over this many z drawn
            from this seed (mmgen's ``get_mean_latent`` averages 4096 random z).

    Raises:
        WeightsError: not an mmgen StyleGANv1 file, or missing, unexpected or mis-shaped tensors.
    """
    config = full_config("stylegan", config)
    state = _mmgen_generator(checkpoint, use_ema)
    _check(state, _mmgen_layout(config), "mmgen StyleGANv1 generator")
    res = _resolutions(config["img_resolution"])
    _check_blur(state, [f"convs.{i}.conv1.1.kernel" for i in range(1, len(res))], "mmgen StyleGANv1 generator")
    lr, n = config["mapping_lr_multiplier"], config["mapping_layers"]
    # mmgen applies w * 0.01 / sqrt(fan_in) (gain 1) and b * 0.01; imgsynth w' * sqrt2 * lr / sqrt(fan_in), b' * lr
    out = _mapping([state[f"style_mapping.{i}.linear.weight_orig"] for i in range(1, n + 1)],
                   [state[f"style_mapping.{i}.bias"] for i in range(1, n + 1)],
                   weight_factor=MMGEN_LR_MLP / (SQRT2 * lr), bias_factor=MMGEN_LR_MLP / lr)
    for i, r in enumerate(res):
        p, b, c = f"convs.{i}", f"synthesis.b{r}", _channels(config, r)
        noise1, noise2 = state[f"injected_noise_{2 * i}"][0, 0], state[f"injected_noise_{2 * i + 1}"][0, 0]
        if i == 0:
            out[f"{b}.const"] = state[f"{p}.conv1.input"][0].float()
            # the constant gets noise, lrelu and AdaIN but no bias
            out.update(_mmgen_layer(state, p, 1, c, noise1, f"{b}.layer0", None, torch.zeros(c)))
        else:
            out.update(_mmgen_layer(state, p, 1, c, noise1, f"{b}.conv0_up", state[f"{p}.conv1.0.conv.weight_orig"],
                                    state[f"{p}.conv1.0.conv.bias"]))
        out.update(_mmgen_layer(state, p, 2, c, noise2, f"{b}.conv" if i == 0 else f"{b}.conv1",
                                state[f"{p}.conv2.conv.weight_orig"], state[f"{p}.conv2.conv.bias"]))
    last = len(res) - 1
    out["synthesis.torgb.module.weight"] = state[f"to_rgbs.{last}.conv.weight_orig"].float() * SQRT2
    out["synthesis.torgb.module.bias"] = state[f"to_rgbs.{last}.conv.bias"].float()
    return _finish(config, out, w_avg_samples, w_avg_seed)


# --- rosinality/style-based-gan-pytorch -------------------------------------------------------------


def _rosinality_blur(i: int) -> str:
    """Prefix of block ``i``'s blur buffers (after FusedUpsample, or after Upsample + EqualConv2d)."""
    return f"generator.progression.{i}.conv1.{1 if i >= ROSINALITY_FUSED_FROM else 2}"


def _rosinality_layout(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of rosinality's ``StyledGenerator`` (all nine blocks, whatever the config's resolution)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (o, n) in enumerate(_mapping_shapes(config)):
        shapes[f"style.{2 * i + 1}.linear.weight_orig"] = (o, n)
        shapes[f"style.{2 * i + 1}.linear.bias"] = (o,)
    for i in range(ROSINALITY_BLOCKS):
        r = 4 * 2**i
        c = _channels(config, r)
        p = f"generator.progression.{i}"
        if i == 0:
            shapes[f"{p}.conv1.input"] = (1, c, 4, 4)
        else:
            cin = _channels(config, r // 2)
            if i >= ROSINALITY_FUSED_FROM:
                shapes[f"{p}.conv1.0.weight"] = (cin, c, 3, 3)
                shapes[f"{p}.conv1.0.bias"] = (c,)
            else:
                shapes[f"{p}.conv1.1.conv.weight_orig"] = (c, cin, 3, 3)
                shapes[f"{p}.conv1.1.conv.bias"] = (c,)
            shapes[f"{_rosinality_blur(i)}.weight"] = shapes[f"{_rosinality_blur(i)}.weight_flip"] = (c, 1, 3, 3)
        for j in (1, 2):
            shapes[f"{p}.noise{j}.weight_orig"] = (1, c, 1, 1)
            shapes[f"{p}.adain{j}.style.linear.weight_orig"] = (2 * c, config["w_dim"])
            shapes[f"{p}.adain{j}.style.linear.bias"] = (2 * c,)
        shapes[f"{p}.conv2.conv.weight_orig"] = (c, c, 3, 3)
        shapes[f"{p}.conv2.conv.bias"] = (c,)
        shapes[f"generator.to_rgb.{i}.conv.weight_orig"] = (config["img_channels"], c, 1, 1)
        shapes[f"generator.to_rgb.{i}.conv.bias"] = (config["img_channels"],)
    return shapes


def _rosinality_generator(checkpoint: dict[str, Any], use_running: bool) -> dict[str, Tensor]:
    if "generator.progression.0.conv1.input" in checkpoint:
        return _tensor_state(checkpoint, "rosinality generator")
    key = "g_running" if use_running else "generator"
    if key not in checkpoint:
        hint = " (pass use_running=False to convert 'generator')" if use_running and "generator" in checkpoint else ""
        raise WeightsError(f"rosinality checkpoint has no {key!r} entry (has {sorted(checkpoint)}){hint}")
    return _tensor_state(checkpoint[key], f"rosinality checkpoint entry {key!r}")


def _infer_rosinality(state: dict[str, Tensor], img_resolution: int | None) -> dict[str, Any]:
    if img_resolution is None:
        raise WeightsError("a rosinality StyleGAN file holds all nine blocks whatever it was trained to: "
                           "pass img_resolution (the size it was trained to, e.g. 256)")
    if img_resolution not in [4 * 2**i for i in range(ROSINALITY_BLOCKS)]:
        raise WeightsError(f"img_resolution must be a power of two from 4 to 1024, got {img_resolution}")
    try:
        w, z = (int(s) for s in state["style.1.linear.weight_orig"].shape)
        img_channels = int(state["generator.to_rgb.0.conv.weight_orig"].shape[0])
        channels = {4 * 2**i: int(state[f"generator.progression.{i}.conv2.conv.weight_orig"].shape[0])
                    for i in range(ROSINALITY_BLOCKS)}
    except (KeyError, ValueError):
        raise WeightsError("rosinality StyleGAN file lacks its mapping, nine progression blocks or to_rgb") from None
    n_mlp = sum(1 for k in state if k.startswith("style.") and k.endswith(".linear.weight_orig"))
    return {
        "z_dim": z, "c_dim": 0, "w_dim": w, "img_resolution": img_resolution, "img_channels": img_channels,
        # rosinality's optimizer applies the 0.01 mapping learning rate, so the stored weights are used as is
        "mapping_layers": n_mlp, "mapping_features": w, "mapping_lr_multiplier": 1.0,
        **_fmap(channels, "rosinality StyleGAN generator"),
        "up_layer_order": "conv_bias_blur", "norm_eps": 1e-5, "shared_block_noise": True,
    }


def _rosinality_layer(state: dict[str, Tensor], p: str, j: int, c: int, noise: Tensor, name: str,
                      weight: Tensor | None, bias: Tensor) -> dict[str, Tensor]:
    # equal_lr(NoiseInjection): fan_in = C, so the applied strengths are weight * sqrt(2 / C)
    strength = state[f"{p}.noise{j}.weight_orig"].reshape(c).float() * math.sqrt(2.0 / c)
    return _layer(name, weight, bias, strength, noise, state[f"{p}.adain{j}.style.linear.weight_orig"],
                  state[f"{p}.adain{j}.style.linear.bias"])


def from_rosinality(
    checkpoint: dict[str, Any], config: dict[str, Any], *, use_running: bool = True, w_avg_samples: int = 10240,
    w_avg_seed: int = 0, noise_seed: int = 0,
) -> dict[str, Tensor]:
    """rosinality/style-based-gan-pytorch checkpoint -> state dict for ``build_model("stylegan", config)``.

    Args:
        checkpoint: the deserialised file (``{'g_running', 'generator', ...}``) or a bare generator
            state dict (the older running-average files).
        config: ``stylegan`` constructor kwargs, e.g. from ``infer_config(checkpoint, img_resolution)``.
        use_running: take ``g_running`` (the moving average ``generate.py`` samples with).
        w_avg_samples, w_avg_seed: truncation centre = mean of the mapping over this many fixed-seed z
            (``generate.py`` averages 10 x 1024 random z).
        noise_seed: seed of the stored noise maps for ``noise_mode='const'`` (the file has none); one
            map per resolution, shared by the block's two layers as in the port.

    Raises:
        WeightsError: not a rosinality file, or missing, unexpected or mis-shaped tensors.
    """
    config = full_config("stylegan", config)
    state = _rosinality_generator(checkpoint, use_running)
    if config["img_resolution"] > 4 * 2 ** (ROSINALITY_BLOCKS - 1):
        raise WeightsError(f"rosinality generators stop at 1024x1024, config asks {config['img_resolution']}")
    _check(state, _rosinality_layout(config), "rosinality StyleGAN generator")
    _check_blur(state, [f"{_rosinality_blur(i)}.{leaf}" for i in range(1, ROSINALITY_BLOCKS)
                        for leaf in ("weight", "weight_flip")], "rosinality StyleGAN generator")
    lr, n = config["mapping_lr_multiplier"], config["mapping_layers"]
    out = _mapping([state[f"style.{2 * i + 1}.linear.weight_orig"] for i in range(n)],
                   [state[f"style.{2 * i + 1}.linear.bias"] for i in range(n)],
                   weight_factor=1.0 / lr, bias_factor=1.0 / lr)
    gen = torch.Generator().manual_seed(noise_seed)
    res = _resolutions(config["img_resolution"])
    for i, r in enumerate(res):
        p, b, c = f"generator.progression.{i}", f"synthesis.b{r}", _channels(config, r)
        noise = torch.randn(r, r, generator=gen)
        if i == 0:
            out[f"{b}.const"] = state[f"{p}.conv1.input"][0].float()
            out.update(_rosinality_layer(state, p, 1, c, noise, f"{b}.layer0", None, torch.zeros(c)))
        elif i >= ROSINALITY_FUSED_FROM:
            # FusedUpsample: conv_transpose2d with the padded 4-shift sum of a (Cin, Cout) kernel, / 4. That is
            # nearest x2 + a 3x3 conv with the kernel transposed, flipped and / 4 (the shift sum commutes
            # with the flip), which is imgsynth's up=2 conv.
            weight = state[f"{p}.conv1.0.weight"].float().transpose(0, 1).flip(2, 3) / 4
            out.update(_rosinality_layer(state, p, 1, c, noise, f"{b}.conv0_up", weight, state[f"{p}.conv1.0.bias"]))
        else:
            out.update(_rosinality_layer(state, p, 1, c, noise, f"{b}.conv0_up",
                                         state[f"{p}.conv1.1.conv.weight_orig"], state[f"{p}.conv1.1.conv.bias"]))
        out.update(_rosinality_layer(state, p, 2, c, noise, f"{b}.conv" if i == 0 else f"{b}.conv1",
                                     state[f"{p}.conv2.conv.weight_orig"], state[f"{p}.conv2.conv.bias"]))
    last = len(res) - 1
    out["synthesis.torgb.module.weight"] = state[f"generator.to_rgb.{last}.conv.weight_orig"].float() * SQRT2
    out["synthesis.torgb.module.bias"] = state[f"generator.to_rgb.{last}.conv.bias"].float()
    return _finish(config, out, w_avg_samples, w_avg_seed)


# --- both -----------------------------------------------------------------------------------------------


def infer_config(checkpoint: dict[str, Any], img_resolution: int | None = None) -> dict[str, Any]:
    """Constructor config of ``stylegan`` for an mmgen/mmagic or a rosinality StyleGAN v1 checkpoint.

    mmgen files give everything from their shapes; rosinality files hold all nine blocks, so the
    resolution they were trained to must be given as ``img_resolution``. Accepts the whole
    deserialised file or the generator state dict.
    """
    if "generator.progression.0.conv1.input" in checkpoint or "g_running" in checkpoint:
        return _infer_rosinality(_rosinality_generator(checkpoint, "g_running" in checkpoint), img_resolution)
    state = checkpoint.get("state_dict", checkpoint)
    if isinstance(state, dict) and any(k.endswith("style_mapping.1.linear.weight_orig") for k in state):
        ema = any(f"{p}style_mapping.1.linear.weight_orig" in state for p in _MMGEN_EMA)
        config = _infer_mmgen(_mmgen_generator(checkpoint, use_ema=ema))
        if img_resolution is not None and img_resolution != config["img_resolution"]:
            res = config["img_resolution"]
            raise WeightsError(f"the mmgen file is a {res}x{res} generator, not {img_resolution}")
        return config
    if isinstance(checkpoint.get("generator"), dict):
        return _infer_rosinality(_rosinality_generator(checkpoint, use_running=False), img_resolution)
    raise WeightsError("not a StyleGAN v1 checkpoint imgsynth knows (mmgen/mmagic 'style_mapping.*' or "
                       "rosinality 'generator.progression.*' keys)")
