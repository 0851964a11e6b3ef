import gzip
import os
import signal
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError, DeviceError, PrecisionError
from imgsynth.training.checkpoint import list_checkpoints, load_checkpoint
from imgsynth.training.config import from_dict
from imgsynth.training.loop import EMA, Trainer, resolve_precision, train
from imgsynth.training.losses import GAN_LOSSES


def write_fashion(root, n=24, seed=0):
    root.mkdir(parents=True, exist_ok=True)
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28) + imgs.tobytes())
    return root


def tiny(tmp_path, out="run", **sections):
    data_dir = write_fashion(tmp_path / "fm")
    raw = {
        "run": {"out_dir": str(tmp_path / out), "steps": 4, "log_every": 2, "sample_every": 100,
                "checkpoint_every": 100, "grid_samples": 4, "keep_checkpoints": 0},
        "data": {"source": "fashion-mnist", "path": str(data_dir), "resolution": 8, "load_size": 10,
                 "hflip": True, "batch_size": 4},
        "model": {"family": "dcgan", "generator": {"z_dim": 4, "ngf": 4}, "discriminator": {"ndf": 4}},
        "optim": {"ema_decay": 0.9},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return from_dict(raw)


@pytest.fixture
def compare_runs(assert_same):
    """``compare_runs(a, b)``: two final checkpoints agree in weights, optimisers, data order, RNGs."""

    def compare(a, b, history=True):
        for key in ("G", "D", "G_ema", "opt_g", "opt_d", "data", "step"):
            assert_same(a[key], b[key], key)
        if history:
            assert a["history"] == b["history"]
        for ra, rb in zip(a["rng"], b["rng"]):
            assert torch.equal(ra["torch"], rb["torch"]) and torch.equal(ra["noise"], rb["noise"])
            assert ra["numpy"] == rb["numpy"] and ra["python"] == rb["python"]

    return compare


def test_resume_is_exact(tmp_path, final_state, compare_runs):
    """N + M steps == N steps, resume, M steps (bit for bit), with a data epoch boundary inside."""
    r1 = r"r1_gamma"
    full = train(tiny(tmp_path, "full", run={"steps": 9}, loss={r1: 1.0, "feature_matching": 0.5}))
    assert full.step == 9 and not full.interrupted
    first = train(tiny(tmp_path, "split", run={"steps": 5}, loss={r1: 1.0, "feature_matching": 0.5}))
    assert first.step == 5
    # the rest with DataLoader workers: they must not change what the run sees
    rest = train(tiny(tmp_path, "split", run={"steps": 9}, data={"workers": 1},
                      loss={r1: 1.0, "feature_matching": 0.5}), resume=True)
    assert rest.step == 9
    # (the loss history differs: the first part logged its own last step 5)
    compare_runs(final_state(tmp_path / "full"), final_state(tmp_path / "split"), history=False)
    # the split run left a checkpoint at 5 beside the final one, each with its resolved recipe
    steps = [s for s, _ in list_checkpoints(tmp_path / "split" / "checkpoints")]
    assert steps == [5, 9]
    assert (tmp_path / "split" / "checkpoints" / "step-00000005.toml").read_text().count("[run]") == 1


def test_ctrl_c_checkpoints_then_resume_is_exact(tmp_path, final_state, compare_runs):
    cfg = tiny(tmp_path, "stopped", run={"steps": 6}, loss={"gan": "wgan-gp", "d_steps": 2})

    def press_ctrl_c(p):
        if p.kind == "step" and p.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = train(cfg, progress=press_ctrl_c)
    assert stopped.interrupted and stopped.step == 3
    assert [s for s, _ in list_checkpoints(tmp_path / "stopped" / "checkpoints")] == [3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = train(cfg, resume=True)
    assert resumed.step == 6 and not resumed.interrupted
    train(tiny(tmp_path, "straight", run={"steps": 6}, loss={"gan": "wgan-gp", "d_steps": 2}))
    compare_runs(final_state(tmp_path / "straight"), final_state(tmp_path / "stopped"))


def test_outputs_of_a_run(tmp_path):
    events = []
    cfg = tiny(tmp_path, run={"steps": 4, "sample_every": 2, "checkpoint_every": 2, "keep_checkpoints": 1})
    result = train(cfg, progress=events.append)
    out = tmp_path / "run"
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [4]  # pruned to the newest
    with Image.open(out / "samples" / "step-00000004.png") as im:
        assert im.mode == "L" and im.size == (2 + 2 * 10, 2 + 2 * 10)  # 2x2 grid of 8 px + 2 px gaps
    assert (out / "samples" / "step-00000002.png").exists()
    with Image.open(out / "losses.png") as im:
        assert im.size == (800, 450)
    assert (out / "config.toml").exists()
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 4
    logs = [e for e in events if e.kind == "log"]
    assert [e.step for e in logs] == [2, 4] and set(logs[0].losses) == {"d", "g"}
    assert all(e.images_per_s > 0 for e in logs)
    assert [h["step"] for h in result.history] == [2, 4]


def test_refuses_to_overwrite_a_run(tmp_path):
    train(tiny(tmp_path, run={"steps": 1}))
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        train(tiny(tmp_path, run={"steps": 2}))


def test_resume_with_other_model_is_refused(tmp_path):
    train(tiny(tmp_path, run={"steps": 1}))
    cfg = tiny(tmp_path, run={"steps": 2}, model={"family": "dcgan", "generator": {"z_dim": 4, "ngf": 8},
                                                   "discriminator": {"ndf": 4}})
    with pytest.raises(ConfigError, match=r"\[model\] differs"):
        train(cfg, resume=True)


def test_generator_that_does_not_fit_the_data(tmp_path):
    cfg = tiny(tmp_path, model={"generator": {"z_dim": 4, "ngf": 4, "img_channels": 3}})
    with pytest.raises(ConfigError, match=r"model.generator.img_channels = 3 does not match the data"):
        train(cfg)


@pytest.mark.parametrize("gan", GAN_LOSSES)
def test_every_loss_trains(tmp_path, gan):
    result = train(tiny(tmp_path, run={"steps": 2}, loss={"gan": gan, "r1_gamma": 0.1, "r1_every": 2}))
    assert all(np.isfinite(v) for rec in result.history for v in rec.values())
    assert {"d", "g", "r1"} <= set(result.history[-1])
    if gan == "wgan-gp":
        assert "gp" in result.history[-1]


def test_grad_clipping_and_ttur(tmp_path):
    cfg = tiny(tmp_path, optim={"grad_clip": 1e-3, "g_lr": 1e-3, "d_lr": 4e-3})
    trainer = Trainer(cfg)
    trainer.step = 0
    trainer._setup()
    assert trainer.opt_g.param_groups[0]["lr"] == 1e-3 and trainer.opt_d.param_groups[0]["lr"] == 4e-3
    batch = {k: v for k, v in trainer.stream.next().items()}
    trainer.train_step([batch], {})
    for net in (trainer.G, trainer.D):
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()]))
        assert norm <= 1e-3 * (1 + 1e-4)


def test_gan_family_resumes_exactly_through_dropout(tmp_path, final_state, compare_runs):
    """The MLP discriminator's dropout draws from the global torch RNG, which resume restores."""

    def cfg(out, steps):
        return tiny(tmp_path, out, run={"steps": steps}, model={
            "family": "gan", "generator": {"z_dim": 4, "hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16], "dropout": 0.5}})

    train(cfg("full", 4))
    train(cfg("split", 2))
    train(cfg("split", 4), resume=True)
    full, split = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    assert full["arch"] == "gan"
    assert full["generator_config"] == {"z_dim": 4, "hidden_sizes": [16], "img_channels": 1,
                                        "img_resolution": 8}
    compare_runs(full, split, history=False)


def test_ema_follows_the_weights():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, 0.75)
    start = ema.model.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.model.weight, 0.75 * start + 0.25 * net.weight)
    ema.update(net, copy_only=True)
    torch.testing.assert_close(ema.model.weight, net.weight)
    assert not ema.model.weight.requires_grad


def test_ema_averages_batchnorm_statistics_and_copies_other_buffers():
    """The EMA network's BatchNorm statistics follow the same average as its weights (copied
    statistics would describe the live weights' last batches); counters are copied."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    net.register_buffer("tracked", torch.zeros(2))  # e.g. StyleGAN's tracked mean w: copied
    ema = EMA(net, 0.75)
    start_mean, start_var = ema.model[1].running_mean.clone(), ema.model[1].running_var.clone()
    net.train()(torch.randn(8, 1, 3, 3) * 3 + 2)
    net.tracked.fill_(5.0)
    ema.update(net)
    torch.testing.assert_close(ema.model[1].running_mean, 0.75 * start_mean + 0.25 * net[1].running_mean)
    torch.testing.assert_close(ema.model[1].running_var, 0.75 * start_var + 0.25 * net[1].running_var)
    assert int(ema.model[1].num_batches_tracked) == 1
    torch.testing.assert_close(ema.model.tracked, net.tracked)
    ema.update(net, copy_only=True)
    torch.testing.assert_close(ema.model[1].running_mean, net[1].running_mean)


def test_bf16_autocast_on_cpu(tmp_path, final_state, native_precision):
    native_precision(bf16=True)  # numerics of the bf16 path at a tiny size, whatever this CPU has
    result = train(tiny(tmp_path, run={"steps": 2, "precision": "bf16"}))
    assert result.precision == "bf16"
    assert all(np.isfinite(v) for v in result.history[-1].values())
    state = final_state(tmp_path / "run")
    assert state["G"]["main.0.weight"].dtype == torch.float32  # master weights stay fp32


def test_precision_resolution(native_precision):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) == "fp32"
    native_precision(bf16=True)
    assert resolve_precision("bf16", cpu) == "bf16"
    native_precision(bf16=False)
    with pytest.raises(PrecisionError, match="bf16 autocast .* not supported natively by this CPU.*use precision fp32"):
        resolve_precision("bf16", cpu)
    with pytest.raises(DeviceError, match="fp16 training needs a GPU"):
        resolve_precision("fp16", cpu)


def test_tensorboard_on_without_the_package(tmp_path):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        train(tiny(tmp_path, run={"steps": 1, "tensorboard": "on"}))


def test_pix2pix_family_on_paired_folders(tmp_path, final_state):
    rng = np.random.default_rng(0)
    for i in range(4):
        for side, mode, shape in (("A", "L", (36, 36)), ("B", "RGB", (36, 36, 3))):
            (tmp_path / side).mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / side / f"{i}.png")
    cfg = from_dict({
        "run": {"out_dir": str(tmp_path / "run"), "steps": 2, "grid_samples": 2},
        "data": {"source": "paired", "path": str(tmp_path / "A"), "path_b": str(tmp_path / "B"),
                 "resolution": 32, "load_size": 34, "hflip": True, "batch_size": 2},
        "model": {"family": "pix2pix", "generator": {"num_downs": 5, "ngf": 4},
                  "discriminator": {"ndf": 4, "n_layers": 2}},
        "loss": {"gan": "lsgan", "l1": 100.0, "feature_matching": 1.0},
    })
    result = train(cfg)
    assert {"d", "g", "l1", "fm"} <= set(result.history[-1])
    state = final_state(tmp_path / "run")
    assert state["arch"] == "pix2pix_unet" and state["task"] == "translate"
    assert state["generator_config"] == {"num_downs": 5, "ngf": 4, "input_nc": 1, "output_nc": 3}
    assert state["discriminator_config"]["input_nc"] == 4
    with Image.open(tmp_path / "run" / "samples" / "step-00000002.png") as im:
        assert im.mode == "RGB" and im.size == (2 + 3 * 34, 2 + 2 * 34)  # input | output | target rows

    from imgsynth.engine.loading import load_model
    from imgsynth.training.export import export

    export(tmp_path / "run", tmp_path / "export")
    loaded = load_model("translate", weights=tmp_path / "export")
    assert loaded.arch == "pix2pix_unet" and loaded.io["input"] == "image"


def test_stylegan2_family_resumes_exactly(tmp_path, final_state, compare_runs):
    """Style mixing and random noise draw from the latent generator and the global RNG."""

    def cfg(out, steps):
        return tiny(tmp_path, out, run={"steps": steps},
                    data={"resolution": 16, "load_size": 0},
                    model={"family": "stylegan2", "options": {"style_mixing": 0.9, "pl_every": 2},
                           "generator": {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64,
                                         "channel_max": 8},
                           "discriminator": {"channel_base": 64, "channel_max": 8}},
                    loss={"r1_gamma": 1.0, "r1_every": 2}, optim={"betas": [0.0, 0.99], "ema_decay": 0.9})

    full = train(cfg("full", 4))
    assert {"d", "g", "r1", "pl"} <= set(full.history[-1])
    train(cfg("split", 2))
    train(cfg("split", 4), resume=True)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    assert a["arch"] == "stylegan2" and a["generator_config"]["img_resolution"] == 16
    compare_runs(a, b, history=False)
    assert a["family_state"]["pl_mean"] > 0 and torch.equal(a["family_state"]["pl_mean"], b["family_state"]["pl_mean"])


def test_family_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"model.options.mixing: the 'stylegan2' family has no such option"):
        train(tiny(tmp_path, model={"family": "stylegan2", "options": {"mixing": 0.5}}))
    with pytest.raises(ConfigError, match=r"model.options.style_mixing must be float"):
        train(tiny(tmp_path, model={"family": "stylegan2", "options": {"style_mixing": "yes"}}))
    from imgsynth.training.families import list_families

    known = list_families()
    assert {"dcgan", "gan", "progan", "stylegan", "stylegan2", "pix2pix", "pix2pixhd", "spade", "panoptic"} <= set(known)
    with pytest.raises(ConfigError, match=rf"unknown model.family 'stylegan3'; known: {', '.join(known)}$"):
        train(tiny(tmp_path, model={"family": "stylegan3"}))


def write_label_pairs(root, n=4, size=20, classes=4):
    rng = np.random.default_rng(0)
    for sub in ("A", "B", "I"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.repeat(np.repeat(rng.integers(0, classes, (size // 4, size // 4), dtype=np.uint8), 4, 0), 4, 1)
        Image.fromarray(label, "L").save(root / "A" / f"{i}.png")
        Image.fromarray(label.astype(np.uint16) * 7).save(root / "I" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB").save(root / "B" / f"{i}.png")


@pytest.mark.parametrize("family, generator, discriminator, resolution, loss", [
    ("pix2pixhd", {"ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1},
     {"ndf": 4, "n_layers": 2, "num_D": 2}, 16, "lsgan"),
    ("spade", {"ngf": 2, "nhidden": 8, "contain_dontcare": True, "spectral_norm": True},
     {"ndf": 4, "n_layers": 2, "num_D": 2, "spectral_norm": True}, 32, "hinge"),
])
def test_label_map_families(tmp_path, family, generator, discriminator, resolution, loss, final_state):
    write_label_pairs(tmp_path, size=resolution + 4)
    cfg = from_dict({
        "run": {"out_dir": str(tmp_path / "run"), "steps": 2, "grid_samples": 2},
        "data": {"source": "paired", "path": str(tmp_path / "A"), "path_b": str(tmp_path / "B"),
                 "path_inst": str(tmp_path / "I"), "label_nc": 4, "resolution": resolution,
                 "load_size": resolution + 2, "hflip": True, "batch_size": 2},
        "model": {"family": family, "generator": generator, "discriminator": discriminator},
        "loss": {"gan": loss, "feature_matching": 10.0},
    })
    result = train(cfg)
    assert {"d", "g", "fm"} <= set(result.history[-1])
    state = final_state(tmp_path / "run")
    assert state["generator_config"]["label_nc"] == 4 and state["generator_config"]["use_instance"] is True
    with Image.open(tmp_path / "run" / "samples" / "step-00000002.png") as im:
        assert im.size == (2 + 3 * (resolution + 2), 2 + 2 * (resolution + 2))

    from imgsynth.engine.loading import load_model
    from imgsynth.training.export import export

    export(tmp_path / "run", tmp_path / "export")
    loaded = load_model("translate", weights=tmp_path / "export")
    assert loaded.arch == state["arch"] and loaded.io["input"] == "label"


def test_label_ids_beyond_the_model_are_an_input_error(tmp_path):
    from imgsynth.errors import InputError

    write_label_pairs(tmp_path, size=20, classes=6)
    cfg = from_dict({
        "run": {"out_dir": str(tmp_path / "run"), "steps": 1},
        "data": {"source": "paired", "path": str(tmp_path / "A"), "path_b": str(tmp_path / "B"),
                 "label_nc": 4, "resolution": 16, "batch_size": 2},
        "model": {"family": "pix2pixhd", "generator": {"ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1},
                  "discriminator": {"ndf": 4, "n_layers": 2}},
    })
    with pytest.raises(InputError, match=r"a label map holds id 5, but the model has 4 label channel"):
        train(cfg)


def progan_cfg(tmp_path, out, steps):
    return tiny(tmp_path, out, run={"steps": steps, "grid_samples": 4, "sample_every": 3},
                data={"resolution": 16, "load_size": 0},
                model={"family": "progan", "generator": {"z_dim": 8, "channels": [8, 8, 4]}, "discriminator": {},
                       "options": {"steps_per_scale": 2, "fade_steps": 1, "drift": 0.001}},
                loss={"gan": "wgan-gp"}, optim={"betas": [0.0, 0.99], "ema_decay": 0.9})


def test_progan_grows_and_resumes_exactly(tmp_path, final_state, compare_runs):
    from imgsynth.training.families import get_family

    fam = get_family("progan")
    fam.scales = 3
    opts = {"steps_per_scale": 2, "fade_steps": 1}
    assert [fam.schedule(s, opts) for s in range(7)] == [
        (0, 0.0), (0, 0.0), (1, 1.0), (1, 0.0), (2, 1.0), (2, 0.0), (2, 0.0)]

    full = train(progan_cfg(tmp_path, "full", 6))
    assert {"d", "g", "gp", "drift"} <= set(full.history[-1])
    train(progan_cfg(tmp_path, "split", 3))
    train(progan_cfg(tmp_path, "split", 6), resume=True)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    compare_runs(a, b, history=False)
    # the 16 px scale is used only from step 4 on: its layers moved between the checkpoints at 3 and 6
    at3 = load_checkpoint(tmp_path / "split" / "checkpoints" / "step-00000003.safetensors")
    for net, key in (("G", "toRGBLayers.2.module.weight"), ("D", "fromRGBLayers.2.module.weight")):
        assert not torch.equal(at3[net][key], a[net][key]), key
    with Image.open(tmp_path / "full" / "samples" / "step-00000003.png") as im:
        assert im.size == (2 + 2 * 18, 2 + 2 * 18)  # 8 px samples shown at 16 px


def test_progan_export_holds_the_grown_depth(tmp_path):
    from imgsynth.engine.loading import load_model
    from imgsynth.training.export import export

    train(progan_cfg(tmp_path, "run", 3))  # scales 0 and 1 grown: 8 px
    export(tmp_path / "run", tmp_path / "export")
    loaded = load_model("sample", weights=tmp_path / "export")
    assert loaded.config["channels"] == [8, 8]
    z = loaded.model.dummy_inputs(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert loaded.model(*z).shape == (2, 1, 8, 8)


def test_unwritable_out_dir_is_an_output_error(tmp_path):
    from imgsynth.errors import OutputError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write to run.out_dir"):
        train(tiny(tmp_path, "file/run", run={"steps": 1}))
