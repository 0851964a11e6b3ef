"""The ``pconv`` training family: a run, exact resume, the two-stage fine-tune, the export."""

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError, WeightsError
from imgsynth.training.checkpoint import list_checkpoints, load_checkpoint
from imgsynth.training.config import from_dict
from imgsynth.training.families.pconv import grow_holes
from imgsynth.training.loop import train


def write_photos(root, n=5, size=40):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        # smooth colour ramps plus noise: something a net can learn to continue into a hole
        ramp = np.linspace(0, 255, size)[None, :, None] * rng.random(3)
        img = np.clip(ramp + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
    return root


def recipe(tmp_path, out="run", steps=4, **options):
    return from_dict({
        "run": {"out_dir": str(tmp_path / out), "steps": steps, "log_every": 2, "sample_every": 100,
                "checkpoint_every": 100, "grid_samples": 2, "keep_checkpoints": 0},
        "data": {"source": "masked", "path": str(write_photos(tmp_path / "photos")), "resolution": 32,
                 "load_size": 36, "hflip": True, "batch_size": 2},
        "model": {"family": "pconv", "generator": {"layer_size": 4, "widths": [4, 8, 8, 8]},
                  "options": {"ssim": 1.0, "min_hole": 0.2, "max_hole": 0.5, **options}},
        "optim": {"betas": [0.9, 0.999], "ema_decay": 0.9},
    })


def test_run_logs_the_paper_terms_and_exports_an_inpainter(tmp_path, final_state):
    result = train(recipe(tmp_path, border=2.0))
    last = result.history[-1]
    assert {"valid", "hole", "tv", "ssim", "border"} <= set(last)
    assert "perceptual" not in last and "style_out" not in last  # no VGG-16 file given
    state = final_state(tmp_path / "run")
    assert state["arch"] == "pconv_unet" and state["task"] == "inpaint"
    assert state["generator_config"]["input_channels"] == 3
    with Image.open(tmp_path / "run" / "samples" / "step-00000004.png") as im:
        assert im.size == (2 + 3 * 34, 2 + 2 * 34)  # input | result | original rows

    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.inpaint import Inpainter
    from imgsynth.training.export import export

    export(tmp_path / "run", tmp_path / "export")
    loaded = load_model("inpaint", weights=tmp_path / "export")
    assert loaded.arch == "pconv_unet" and loaded.io["normalization"] == "imagenet"
    img = np.asarray(Image.open(tmp_path / "photos" / "0.png"))[:32, :32]
    hole = np.zeros((32, 32), bool)
    hole[8:20, 10:24] = True
    out = Inpainter(loaded.model.eval())([img], [hole])[0]
    assert np.array_equal(out[~hole], img[~hole])


def test_resume_is_exact(tmp_path, final_state, assert_same):
    train(recipe(tmp_path, "full", steps=5))
    train(recipe(tmp_path, "split", steps=2))
    train(recipe(tmp_path, "split", steps=5), resume=True)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    for key in ("G", "D", "G_ema", "opt_g", "data", "step"):
        assert_same(a[key], b[key], key)
    assert torch.equal(a["rng"][0]["noise"], b["rng"][0]["noise"])


def test_stage_two_starts_from_stage_one_with_encoder_bn_frozen(tmp_path, final_state):
    train(recipe(tmp_path, "stage1", steps=2))
    ckpt = list_checkpoints(tmp_path / "stage1" / "checkpoints")[-1][1]
    stage1 = load_checkpoint(ckpt)["G_ema"]
    cfg = recipe(tmp_path, "stage2", steps=1, init_from=str(ckpt), freeze_encoder_bn=True)
    cfg.optim.g_lr = 5e-5
    train(cfg)
    stage2 = final_state(tmp_path / "stage2")["G"]
    # encoder BatchNorm kept its running statistics; the decoder's kept learning them
    assert torch.equal(stage2["enc_2.bn.running_mean"], stage1["enc_2.bn.running_mean"])
    assert not torch.equal(stage2["dec_2.bn.running_mean"], stage1["dec_2.bn.running_mean"])
    # one small step away from the stage-1 weights, not from a fresh initialisation
    w1, w2 = stage1["dec_3.conv.weight"], stage2["dec_3.conv.weight"]
    assert 0 < (w2 - w1).abs().max() < 1e-3


def test_init_from_an_export_folder_or_a_card_id(tmp_path, final_state):
    from imgsynth.engine.loading import load_model
    from imgsynth.training.export import export

    train(recipe(tmp_path, "stage1", steps=2))
    export(tmp_path / "stage1", tmp_path / "export", dtype="fp16")
    exported = load_model("inpaint", weights=tmp_path / "export").model.state_dict()
    cfg = recipe(tmp_path, "ft", steps=1, init_from=str(tmp_path / "export"), freeze_encoder_bn=True,
                 freeze_decoder_bn=True)
    cfg.optim.g_lr = 1e-5
    train(cfg)
    tuned = final_state(tmp_path / "ft")["G"]
    # every BatchNorm kept the exported statistics; weights moved one small step from the export
    for key in ("enc_2.bn.running_mean", "dec_2.bn.running_var"):
        assert torch.equal(tuned[key], exported[key].float())
    assert 0 < (tuned["dec_3.conv.weight"] - exported["dec_3.conv.weight"].float()).abs().max() < 1e-3

    bundled = load_model("inpaint", model="pconv-photos-256").model.state_dict()
    from imgsynth.training.families import get_family

    fam = get_family("pconv")
    assert torch.equal(fam._init_weights("pconv-photos-256")["dec_1.conv.weight"], bundled["dec_1.conv.weight"].float())
    with pytest.raises(ConfigError, match=r"do not fit .*(size mismatch|Missing key|Unexpected key)"):  # the tiny recipe is not the bundled net's shape
        train(recipe(tmp_path, "card", steps=1, init_from="pconv-photos-256"))
    with pytest.raises(ConfigError, match="init_from: 'no-such-card'"):
        train(recipe(tmp_path, "unknown", steps=1, init_from="no-such-card"))
    with pytest.raises(ConfigError, match="not 'pconv_unet'"):
        fam._init_weights("telea")


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="min_hole <= max_hole"):
        train(recipe(tmp_path, min_hole=0.5, max_hole=0.3))
    with pytest.raises(ConfigError, match="border_px"):
        train(recipe(tmp_path, "px", border=1.0, border_px=0))
    with pytest.raises(WeightsError, match="does not exist"):
        train(recipe(tmp_path, "other", init_from=str(tmp_path / "nothing.safetensors")))
    with pytest.raises(WeightsError, match="VGG-16 weights"):
        train(recipe(tmp_path, "vgg", vgg_weights=str(tmp_path / "vgg16.pth")))


def test_grow_holes_reaches_the_drawn_ratio_reproducibly():
    holes = torch.zeros(6, 1, 64, 64)
    holes[:, :, :4, :4] = 1
    a = grow_holes(holes, 0.3, 0.5, torch.Generator().manual_seed(3))
    b = grow_holes(holes, 0.3, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    ratios = a.mean((1, 2, 3))
    assert (ratios >= 0.3).all() and (a >= holes).all()  # only ever grows
    assert not torch.equal(a, grow_holes(holes, 0.3, 0.5, torch.Generator().manual_seed(4)))


def test_validation_scores_the_composited_fill(tmp_path):
    """Held-out photos: PSNR/SSIM/L1 of the fill pasted into the known pixels, the same each time."""
    from imgsynth.training.loop import Trainer

    cfg = recipe(tmp_path, steps=2)
    cfg.data.val_items = 2
    trainer = Trainer(cfg)
    trainer._setup()
    first = trainer.validate()
    assert first == trainer.validate() and set(first) == {"step", "val_psnr", "val_ssim", "val_l1"}
    assert first["val_psnr"] > 5 and 0 < first["val_ssim"] <= 1
    result = train(cfg)
    assert result.step == 2 and (tmp_path / "run" / "best").is_dir()


# ---------------------------------------------------------------- the adversarial term

def adv_recipe(tmp_path, out="adv", steps=3, weight=0.1, **options):
    cfg = recipe(tmp_path, out, steps=steps, adversarial=weight, **options)
    cfg.model.discriminator = {"ndf": 4, "n_layers": 2}
    cfg.loss.gan = "hinge"
    return cfg


def test_adversarial_patchgan_trains_on_the_composite(tmp_path, final_state):
    from imgsynth.training.loop import Trainer

    start = Trainer(adv_recipe(tmp_path))
    start._setup()  # the run's D as built and initialised, before any step
    d0 = {k: v.clone() for k, v in start.D.state_dict().items()}
    train(adv_recipe(tmp_path))
    state = final_state(tmp_path / "adv")
    d1 = state["D"]
    # the family's SN-PatchGAN (spectral norm, no other normalisation) on RGB + hole
    assert d1["layers.0.0.parametrizations.weight.original"].shape[1] == 4
    assert not any("running_mean" in k for k in d1)
    moved = [k for k in d0 if k.endswith("original") and not torch.equal(d0[k], d1[k])]
    assert len(moved) == sum(k.endswith("original") for k in d0) == 4  # every conv of D learned
    hist = state["history"]
    assert hist[0]["d"] != hist[-1]["d"] and hist[0]["g"] != hist[-1]["g"]  # not the constant critic


def test_generator_loss_includes_the_weighted_adversarial_term(tmp_path):
    from imgsynth.training import losses as L
    from imgsynth.training.loop import Trainer, _cast_batch

    cfg = adv_recipe(tmp_path, weight=0.25)
    trainer = Trainer(cfg)
    trainer._setup()
    seen = {}

    def record(loss, module, opt, scaler):
        if module is trainer.G:
            seen["total"] = loss.detach()
            loss.backward()
            seen["grads"] = [p.grad.clone() for p in trainer.G.parameters() if p.grad is not None]

    trainer._apply = record
    batch = _cast_batch(trainer.stream.next(), trainer.device)
    fake = trainer._generate(batch, grad=True)
    logs = {}
    trainer._g_step(batch, fake, logs)
    fam = trainer.family
    trainer.D.eval()  # spectral norm without another power iteration: the same sigma as the step used
    with torch.no_grad():
        adv = L.g_loss("hinge", trainer.D(fam.d_input(batch, fake)))
        rest = sum(fam.extra_g_losses(cfg, batch, fake).values())
    assert torch.isclose(logs["g"], adv, rtol=1e-5)
    assert torch.isclose(seen["total"], 0.25 * adv + rest, rtol=1e-5, atol=1e-7)
    assert seen["grads"] and any(g.abs().sum() > 0 for g in seen["grads"])


def test_adversarial_resume_is_exact(tmp_path, final_state, assert_same):
    train(adv_recipe(tmp_path, "full", steps=4))
    train(adv_recipe(tmp_path, "split", steps=2))
    train(adv_recipe(tmp_path, "split", steps=4), resume=True)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "data", "step", "history"):
        assert_same(a[key], b[key], key)
    assert any("_u" in k for k in a["D"])  # the spectral-norm power-iteration vectors are saved too


def test_adversarial_off_is_the_reconstruction_only_run(tmp_path, final_state, assert_same):
    train(recipe(tmp_path, "plain", steps=3))
    train(recipe(tmp_path, "zero", steps=3, adversarial=0.0))
    a, b = final_state(tmp_path / "plain"), final_state(tmp_path / "zero")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "history"):
        assert_same(a[key], b[key], key)
    assert set(a["D"]) == {"logit"}  # the constant critic: G gets no adversarial gradient
    with pytest.raises(ConfigError, match="adversarial must not be negative"):
        train(recipe(tmp_path, "neg", adversarial=-0.1))
    with pytest.raises(ConfigError, match="unknown config key 'model.discriminator.ndf'; this network takes none here"):
        cfg = recipe(tmp_path, "nod")
        cfg.model.discriminator = {"ndf": 4}  # a PatchGAN setting without the adversarial term
        train(cfg)


def test_adversarial_run_exports_the_generator_only(tmp_path):
    from imgsynth.engine.loading import load_model
    from imgsynth.training.export import export

    train(adv_recipe(tmp_path, steps=2))
    export(tmp_path / "adv", tmp_path / "export")
    loaded = load_model("inpaint", weights=tmp_path / "export")
    assert loaded.arch == "pconv_unet"


def test_lowpass_term_is_the_weighted_block_mean_error_of_the_composite(tmp_path):
    from imgsynth.training.families.pconv import _imagenet
    from imgsynth.training.losses import lowpass_mse
    from imgsynth.training.loop import Trainer, _cast_batch

    cfg = recipe(tmp_path, lowpass=3.0, lowpass_px=4)
    trainer = Trainer(cfg)
    trainer._setup()
    batch = _cast_batch(trainer.stream.next(), trainer.device)
    fake = trainer._generate(batch, grad=False)
    fam = trainer.family
    terms = fam.extra_g_losses(cfg, batch, fake)
    gt = _imagenet(batch["image"].float())
    hole = batch["used_hole"]
    comp = hole * fake + (1 - hole) * gt
    assert torch.isclose(terms["lowpass"], 3.0 * lowpass_mse(comp, gt, 4), rtol=1e-6)
    # a fill that is the photo shifted in brightness inside the hole: the term sees it, and only there
    brighter = fam.extra_g_losses(cfg, batch, gt + 0.3)["lowpass"]
    exact = fam.extra_g_losses(cfg, batch, gt)["lowpass"]
    assert float(exact) < 1e-10 < float(brighter)


def test_lowpass_option_runs_and_is_checked(tmp_path):
    result = train(recipe(tmp_path, steps=2, lowpass=2.0))
    assert "lowpass" in result.history[-1]
    assert "lowpass" not in train(recipe(tmp_path, "off", steps=2)).history[-1]
    for bad in ({"lowpass": -1.0}, {"lowpass": 1.0, "lowpass_px": 1}, {"lowpass": 1.0, "lowpass_px": 2.5}):
        with pytest.raises(ConfigError, match="lowpass"):
            train(recipe(tmp_path, "bad", steps=1, **bad))
