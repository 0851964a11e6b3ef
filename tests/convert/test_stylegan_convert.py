"""StyleGAN v1 converters (imgsynth.convert.stylegan) against literal re-implementations of the ports.

No StyleGAN v1 conformance data exists, so each test builds a checkpoint in the port's published layout
(mmgen ``StyleGANv1Generator`` inside ``{'meta', 'state_dict'}``; rosinality ``StyledGenerator`` inside
``{'g_running', ...}``) with random values at reduced widths, converts it, loads it strictly and
compares the images with a forward pass written here from the ports' source, operation by operation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imgsynth.convert.stylegan import from_mmgen, from_rosinality, infer_config
from imgsynth.engine.cards import load_cards
from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model

MMGEN_RES, MMGEN_W = 32, 8
MMGEN_CH = {4: 8, 8: 8, 16: 4, 32: 2}  # fmap_base 32, fmap_max 8
ROSI_W = 8
ROSI_CH = {4 * 2**i: c for i, c in enumerate([8, 8, 8, 8, 8, 8, 8, 4, 2])}  # fmap_base 1024, fmap_max 8
BLUR = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16


def _close(out: torch.Tensor, ref: torch.Tensor, atol: float = 1e-4) -> None:
    err = float((out - ref).abs().max())
    assert err <= atol * max(1.0, float(ref.abs().max())), err


def _randn(shape, gen, device=None):
    if device == "meta":
        return torch.empty(shape, device="meta")
    return torch.randn(shape, generator=gen)


# --- mmgen / mmagic ---------------------------------------------------------------------------------


def _mmgen_generator(gen, res=MMGEN_RES, w=MMGEN_W, ch=MMGEN_CH, device=None) -> dict[str, torch.Tensor]:
    """Generator keys of mmgen's StyleGANv1Generator(out_size=res, style_channels=w), random values."""
    g = {}
    for i in range(1, 9):
        g[f"style_mapping.{i}.linear.weight_orig"] = _randn((w, w), gen, device) * 100  # stored / lr_mlp
        g[f"style_mapping.{i}.bias"] = _randn((w,), gen, device) * 30
    n = int(math.log2(res)) - 1
    for i in range(n):
        r, p = 4 * 2**i, f"convs.{i}"
        c = ch[r]
        if i == 0:
            g[f"{p}.conv1.input"] = _randn((1, c, 4, 4), gen, device)
        else:
            g[f"{p}.conv1.0.conv.weight_orig"] = _randn((c, ch[r // 2], 3, 3), gen, device)
            g[f"{p}.conv1.0.conv.bias"] = _randn((c,), gen, device) * 0.5
            g[f"{p}.conv1.1.kernel"] = BLUR.clone() if device != "meta" else torch.empty(3, 3, device="meta")
        for j in (1, 2):
            g[f"{p}.noise_injector{j}.weight"] = _randn((1,), gen, device) * 0.5
            g[f"{p}.adain{j}.affine.weight_orig"] = _randn((2 * c, w), gen, device)
            bias = _randn((2 * c,), gen, device) * 0.3
            g[f"{p}.adain{j}.affine.bias"] = bias if device == "meta" else bias + torch.cat([torch.ones(c),
                                                                                             torch.zeros(c)])
        g[f"{p}.conv2.conv.weight_orig"] = _randn((c, c, 3, 3), gen, device)
        g[f"{p}.conv2.conv.bias"] = _randn((c,), gen, device) * 0.5
        g[f"to_rgbs.{i}.conv.weight_orig"] = _randn((3, c, 1, 1), gen, device)
        g[f"to_rgbs.{i}.conv.bias"] = _randn((3,), gen, device) * 0.1
    for j in range(2 * n):
        r = 2 ** ((j + 4) // 2)
        g[f"injected_noise_{j}"] = _randn((1, 1, r, r), gen, device)
    return g


def _mmgen_file(seed: int = 0) -> dict:
    """What mmgen's runner saves: {'meta', 'state_dict'} with the whole ProgressiveGrowingGAN."""
    gen = torch.Generator().manual_seed(seed)
    sd = {f"generator.{k}": v for k, v in _mmgen_generator(gen).items()}
    sd |= {f"generator_ema.{k}": v for k, v in _mmgen_generator(gen).items()}
    sd |= {"discriminator.convs.0.0.conv.weight_orig": torch.randn(8, 8, 3, 3, generator=gen),
           "shown_nkimg": torch.tensor(25000.0), "_curr_transition_weight": torch.tensor(1.0),
           "_next_scale_int": torch.tensor(MMGEN_RES, dtype=torch.int32),
           "_curr_scale_int": torch.tensor(MMGEN_RES, dtype=torch.int32)}
    return {"meta": {"iter": 670000, "mmcv_version": "1.3.1"}, "state_dict": sd}


def _mmgen_reference(g, z, *, noise: str = "const", truncation: float = 1.0, truncation_latent=None):
    """StyleGANv1Generator.forward (single style, curr_scale = out_size, transition_weight = 1)."""
    x = z / (torch.linalg.norm(z, dim=1, keepdim=True) / math.sqrt(z.shape[1]) + 1e-6)
    for i in range(1, 9):
        wt = g[f"style_mapping.{i}.linear.weight_orig"]
        x = F.leaky_relu(F.linear(x, wt * 1.0 * math.sqrt(1.0 / wt.shape[1]) * 0.01)
                         + g[f"style_mapping.{i}.bias"] * 0.01, 0.2)
    if truncation < 1:
        x = truncation_latent + truncation * (x - truncation_latent)

    def conv(t, key, pad):
        wt = g[f"{key}.weight_orig"]
        return F.conv2d(t, wt * math.sqrt(2) * math.sqrt(1.0 / wt[0].numel()), g[f"{key}.bias"], padding=pad)

    def inject(t, p, j, idx):
        n = g[f"injected_noise_{idx}"] if noise == "const" else t.new_empty(t.shape[0], 1, *t.shape[2:]).normal_()
        return t + g[f"{p}.noise_injector{j}.weight"] * n

    def adain(t, p, j):
        a = g[f"{p}.adain{j}.affine.weight_orig"]
        s = F.linear(x, a * math.sqrt(2) * math.sqrt(1.0 / a.shape[1]), g[f"{p}.adain{j}.affine.bias"])
        gamma, beta = s[:, :, None, None].chunk(2, 1)
        return gamma * F.instance_norm(t, eps=1e-5) + beta

    n = sum(1 for k in g if k.endswith(".conv2.conv.weight_orig"))
    out = None
    for i in range(n):
        p = f"convs.{i}"
        if i == 0:
            out = g[f"{p}.conv1.input"].repeat(z.shape[0], 1, 1, 1)
        else:
            out = F.leaky_relu(conv(F.interpolate(out, scale_factor=2, mode="nearest"), f"{p}.conv1.0.conv", 1), 0.2)
            k = g[f"{p}.conv1.1.kernel"]  # upfirdn2d(pad=(1, 1)): a true convolution with zero padding 1
            out = F.conv2d(F.pad(out, (1, 1, 1, 1)), k.flip(0, 1).expand(out.shape[1], 1, 3, 3), groups=out.shape[1])
        out = adain(F.leaky_relu(inject(out, p, 1, 2 * i), 0.2), p, 1)
        out = adain(F.leaky_relu(inject(conv(out, f"{p}.conv2.conv", 1), p, 2, 2 * i + 1), 0.2), p, 2)
    return conv(out, f"to_rgbs.{n - 1}.conv", 0)


@pytest.fixture(scope="module")
def mmgen():
    ckpt = _mmgen_file()
    config = infer_config(ckpt)
    return ckpt, config


def _strip(ckpt: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def _load(config: dict, state: dict) -> torch.nn.Module:
    g = build_model("stylegan", config).eval()
    g.load_state_dict(state, strict=True)
    return g


def test_mmgen_infer_config(mmgen):
    _, config = mmgen
    assert config == {
        "z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 32, "img_channels": 3, "mapping_layers": 8,
        "mapping_features": 8, "mapping_lr_multiplier": 0.01, "fmap_base": 32, "fmap_max": 8,
        "up_layer_order": "conv_bias_lrelu_blur", "norm_eps": 1e-5, "shared_block_noise": False,
    }


@pytest.mark.parametrize("use_ema", [True, False])
def test_mmgen_matches_reference(mmgen, use_ema):
    ckpt, config = mmgen
    g = _load(config, from_mmgen(ckpt, config, use_ema=use_ema))
    ref_sd = _strip(ckpt, "generator_ema." if use_ema else "generator.")
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = _mmgen_reference(ref_sd, z)
        _close(g(z, noise_mode="const"), ref)
        w_avg = g.mapping.w_avg
        _close(g(z, truncation_psi=0.7), _mmgen_reference(ref_sd, z, truncation=0.7, truncation_latent=w_avg))
        torch.manual_seed(7)
        out = g(z, noise_mode="random")
        torch.manual_seed(7)
        _close(out, _mmgen_reference(ref_sd, z, noise="random"))
    assert ref.shape == (3, 3, 32, 32)
    assert not torch.allclose(out, ref, atol=1e-3)  # the noise matters


def test_mmgen_w_avg_is_the_seeded_mapping_mean(mmgen):
    ckpt, config = mmgen
    g = _load(config, from_mmgen(ckpt, config, w_avg_samples=2048, w_avg_seed=3))
    gen = torch.Generator().manual_seed(3)
    z = torch.cat([torch.randn(1024, 8, generator=gen) for _ in range(2)])
    ref_sd = _strip(ckpt, "generator_ema.")
    x = z / (torch.linalg.norm(z, dim=1, keepdim=True) / math.sqrt(8) + 1e-6)
    for i in range(1, 9):
        wt = ref_sd[f"style_mapping.{i}.linear.weight_orig"]
        x = F.leaky_relu(F.linear(x, wt * math.sqrt(1 / 8) * 0.01) + ref_sd[f"style_mapping.{i}.bias"] * 0.01, 0.2)
    _close(g.mapping.w_avg, x.mean(0), atol=1e-5)


def test_mmagic_ema_wrapper_and_bare_generator(mmgen):
    """mmagic 1.x keeps the EMA generator under ``generator_ema.module.`` with a ``steps`` counter."""
    ckpt, config = mmgen
    ema = _strip(ckpt, "generator_ema.")
    wrapped = {"state_dict": {f"generator_ema.module.{k}": v for k, v in ema.items()}
               | {"generator_ema.steps": torch.tensor(10)}}
    expected = from_mmgen(ckpt, config)
    for variant in (wrapped, ema):
        assert infer_config(variant) == config
        state = from_mmgen(variant, config)
        assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_converted_state_saves_as_safetensors(mmgen):
    from safetensors.torch import save

    ckpt, config = mmgen
    assert save(from_mmgen(ckpt, config))


def test_mmgen_refusals(mmgen):
    ckpt, config = mmgen
    sd = dict(ckpt["state_dict"])
    del sd["generator_ema.convs.1.conv2.conv.bias"]
    with pytest.raises(WeightsError, match=r"missing \['convs.1.conv2.conv.bias'\]") as err:
        from_mmgen({"state_dict": sd}, config)
    assert "\n" not in str(err.value)
    sd = dict(ckpt["state_dict"], **{"generator_ema.convs.1.conv1.1.kernel": torch.full((3, 3), 1 / 9)})
    with pytest.raises(WeightsError, match="not the normalised"):
        from_mmgen({"state_dict": sd}, config)
    with pytest.raises(WeightsError, match="shape"):
        from_mmgen(ckpt, {**config, "fmap_max": 16})
    no_ema = {"state_dict": {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("generator_ema.")}}
    with pytest.raises(WeightsError, match="use_ema=False"):
        from_mmgen(no_ema, config)
    assert infer_config(no_ema) == config
    with pytest.raises(WeightsError, match="not 64"):
        infer_config(ckpt, img_resolution=64)
    with pytest.raises(WeightsError, match="not a StyleGAN v1 checkpoint"):
        infer_config({"netG": {}})


# --- rosinality/style-based-gan-pytorch ------------------------------------------------------------


def _rosinality_generator(gen, w=ROSI_W, ch=ROSI_CH, device=None) -> dict[str, torch.Tensor]:
    """state_dict() of rosinality's StyledGenerator(w): all nine blocks, random values."""
    g = {}
    for i in range(8):
        g[f"style.{2 * i + 1}.linear.weight_orig"] = _randn((w, w), gen, device)
        g[f"style.{2 * i + 1}.linear.bias"] = _randn((w,), gen, device) * 0.3
    for i in range(9):
        r, p = 4 * 2**i, f"generator.progression.{i}"
        c = ch[r]
        if i == 0:
            g[f"{p}.conv1.input"] = _randn((1, c, 4, 4), gen, device)
        else:
            cin = ch[r // 2]
            if i >= 5:  # fused=True: FusedUpsample(in, out) holds a transposed-conv weight
                g[f"{p}.conv1.0.weight"] = _randn((cin, c, 3, 3), gen, device)
                g[f"{p}.conv1.0.bias"] = _randn((c,), gen, device) * 0.5
                blur = f"{p}.conv1.1"
            else:  # Upsample, EqualConv2d, Blur
                g[f"{p}.conv1.1.conv.weight_orig"] = _randn((c, cin, 3, 3), gen, device)
                g[f"{p}.conv1.1.conv.bias"] = _randn((c,), gen, device) * 0.5
                blur = f"{p}.conv1.2"
            for leaf in ("weight", "weight_flip"):
                g[f"{blur}.{leaf}"] = (torch.empty(c, 1, 3, 3, device="meta") if device == "meta"
                                       else BLUR.expand(c, 1, 3, 3).clone())
        for j in (1, 2):
            g[f"{p}.noise{j}.weight_orig"] = _randn((1, c, 1, 1), gen, device)
            g[f"{p}.adain{j}.style.linear.weight_orig"] = _randn((2 * c, w), gen, device)
            bias = _randn((2 * c,), gen, device) * 0.3
            g[f"{p}.adain{j}.style.linear.bias"] = bias if device == "meta" else bias + torch.cat([torch.ones(c),
                                                                                                   torch.zeros(c)])
        g[f"{p}.conv2.conv.weight_orig"] = _randn((c, c, 3, 3), gen, device)
        g[f"{p}.conv2.conv.bias"] = _randn((c,), gen, device) * 0.5
        g[f"generator.to_rgb.{i}.conv.weight_orig"] = _randn((3, c, 1, 1), gen, device)
        g[f"generator.to_rgb.{i}.conv.bias"] = _randn((3,), gen, device) * 0.1
    return g


def _rosinality_reference(g, z, step: int, noise: list[torch.Tensor], mean_style=None, style_weight=0.7):
    """StyledGenerator.forward(z, noise, step, alpha=1, mean_style, style_weight), one style."""
    def eq(wt):  # EqualLR: fan_in = size(1) * weight[0][0].numel()
        return wt * math.sqrt(2 / (wt.size(1) * wt[0][0].numel()))

    x = z / torch.sqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    for i in range(8):
        x = F.leaky_relu(F.linear(x, eq(g[f"style.{2 * i + 1}.linear.weight_orig"]),
                                  g[f"style.{2 * i + 1}.linear.bias"]), 0.2)
    if mean_style is not None:
        x = mean_style + style_weight * (x - mean_style)

    def adain(t, p, j):
        s = F.linear(x, eq(g[f"{p}.adain{j}.style.linear.weight_orig"]), g[f"{p}.adain{j}.style.linear.bias"])
        gamma, beta = s[:, :, None, None].chunk(2, 1)
        return gamma * F.instance_norm(t, eps=1e-5) + beta

    def blur(t, key):
        return F.conv2d(t, g[f"{key}.weight"], padding=1, groups=t.shape[1])

    out = None
    for i in range(step + 1):
        p = f"generator.progression.{i}"
        if i == 0:
            out = g[f"{p}.conv1.input"].repeat(z.shape[0], 1, 1, 1)
        elif i >= 5:
            wt = g[f"{p}.conv1.0.weight"]
            wt = F.pad(wt * math.sqrt(2 / (wt.shape[0] * 9)), [1, 1, 1, 1])
            wt = (wt[:, :, 1:, 1:] + wt[:, :, :-1, 1:] + wt[:, :, 1:, :-1] + wt[:, :, :-1, :-1]) / 4
            out = blur(F.conv_transpose2d(out, wt, g[f"{p}.conv1.0.bias"], stride=2, padding=1), f"{p}.conv1.1")
        else:
            out = F.interpolate(out, scale_factor=2, mode="nearest")
            out = F.conv2d(out, eq(g[f"{p}.conv1.1.conv.weight_orig"]), g[f"{p}.conv1.1.conv.bias"], padding=1)
            out = blur(out, f"{p}.conv1.2")
        out = adain(F.leaky_relu(out + eq(g[f"{p}.noise1.weight_orig"]) * noise[i], 0.2), p, 1)
        out = F.conv2d(out, eq(g[f"{p}.conv2.conv.weight_orig"]), g[f"{p}.conv2.conv.bias"], padding=1)
        out = adain(F.leaky_relu(out + eq(g[f"{p}.noise2.weight_orig"]) * noise[i], 0.2), p, 2)
    return F.conv2d(out, eq(g[f"generator.to_rgb.{step}.conv.weight_orig"]), g[f"generator.to_rgb.{step}.conv.bias"])


@pytest.fixture(scope="module")
def rosinality():
    gen = torch.Generator().manual_seed(1)
    running, trained = _rosinality_generator(gen), _rosinality_generator(gen)
    ckpt = {"generator": trained, "discriminator": {}, "g_optimizer": {"state": {}, "param_groups": []},
            "d_optimizer": {"state": {}, "param_groups": []}, "g_running": running}
    return ckpt, infer_config(ckpt, img_resolution=128)


def test_rosinality_infer_config(rosinality):
    _, config = rosinality
    assert config == {
        "z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 128, "img_channels": 3, "mapping_layers": 8,
        "mapping_features": 8, "mapping_lr_multiplier": 1.0, "fmap_base": 1024, "fmap_max": 8,
        "up_layer_order": "conv_bias_blur", "norm_eps": 1e-5, "shared_block_noise": True,
    }


def test_rosinality_matches_reference(rosinality):
    """128x128 covers the plain (8-64) and the fused (128) upsampling blocks."""
    ckpt, config = rosinality
    g = _load(config, from_rosinality(ckpt, config))
    sd, step = ckpt["g_running"], 5
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    blocks = [getattr(g.synthesis, f"b{4 * 2**i}") for i in range(step + 1)]
    const = [(blocks[0].layer0 if i == 0 else b.conv0_up).noise_const[None, None] for i, b in enumerate(blocks)]
    for i, b in enumerate(blocks):  # one stored map per resolution, shared as the port shares its noise
        assert torch.equal((b.conv if i == 0 else b.conv1).noise_const[None, None], const[i])
    with torch.no_grad():
        ref = _rosinality_reference(sd, z, step, const)
        _close(g(z, noise_mode="const"), ref)
        _close(g(z, truncation_psi=0.7),
               _rosinality_reference(sd, z, step, const, mean_style=g.mapping.w_avg, style_weight=0.7))
        torch.manual_seed(11)
        out = g(z, noise_mode="random")
        torch.manual_seed(11)  # StyledGenerator draws one (N, 1, r, r) map per resolution, in order
        noise = [torch.randn(2, 1, 4 * 2**i, 4 * 2**i) for i in range(step + 1)]
        _close(out, _rosinality_reference(sd, z, step, noise))
    assert ref.shape == (2, 3, 128, 128)
    # the fused block really is used: its conv weight moves the image
    with torch.no_grad():
        blocks[5].conv0_up.conv.module.weight.mul_(2)
        assert not torch.allclose(g(z, noise_mode="const"), ref, atol=1e-3)


def test_rosinality_bare_file_training_entry_and_refusals(rosinality):
    ckpt, config = rosinality
    expected = from_rosinality(ckpt, config, w_avg_samples=1024)
    bare = from_rosinality(ckpt["g_running"], config, w_avg_samples=1024)  # older running-average files
    assert all(torch.equal(bare[k], expected[k]) for k in expected)
    trained = from_rosinality(ckpt, config, use_running=False, w_avg_samples=1024)
    assert not torch.equal(trained["synthesis.torgb.module.weight"], expected["synthesis.torgb.module.weight"])
    with pytest.raises(WeightsError, match="use_running=False"):
        from_rosinality({"generator": ckpt["generator"]}, config)
    with pytest.raises(WeightsError, match="pass img_resolution"):
        infer_config(ckpt)
    partial = {k: v for k, v in ckpt["g_running"].items() if not k.startswith("generator.progression.8.")}
    with pytest.raises(WeightsError, match="missing") as err:
        from_rosinality(partial, config)
    assert "\n" not in str(err.value)


# --- released configurations -------------------------------------------------------------------------


RELEASED_CH = {4 * 2**i: c for i, c in enumerate([512, 512, 512, 512, 256, 128, 64, 32, 16])}


@pytest.mark.parametrize("card_id,res", [("stylegan-mmgen-ffhq-256", 256), ("stylegan-mmgen-ffhq-1024", 1024)])
def test_cards_hold_the_config_of_the_released_mmgen_files(card_id, res):
    """infer_config on the released key/shape list (meta tensors: no memory) gives the card's config."""
    g = _mmgen_generator(None, res=res, w=512, ch=RELEASED_CH, device="meta")
    card = load_cards()[card_id]
    assert card.source.converter == "stylegan:from_mmgen"
    assert infer_config({"state_dict": {f"generator_ema.{k}": v for k, v in g.items()}}) == card.config
    with torch.device("meta"):
        assert build_model("stylegan", card.config).num_ws == 2 * (int(math.log2(res)) - 1)


def test_released_rosinality_layout_gives_the_standard_config():
    g = _rosinality_generator(None, w=512, ch=RELEASED_CH, device="meta")
    config = infer_config({"g_running": g}, img_resolution=512)
    assert (config["fmap_base"], config["fmap_max"], config["z_dim"]) == (8192, 512, 512)
