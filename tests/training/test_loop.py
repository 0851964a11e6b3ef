import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError, DeviceError, PrecisionError
from imgsynth.training.checkpoint import list_checkpoints
from imgsynth.training.config import from_dict
from imgsynth.training.loop import EMA, Trainer, resolve_precision, train
from imgsynth.training.losses import GAN_LOSSES


def test_resume_is_exact(tmp_path, final_state, compare_runs, tiny):
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


def test_ctrl_c_checkpoints_then_resume_is_exact(tmp_path, final_state, compare_runs, tiny):
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


def test_outputs_of_a_run(tmp_path, tiny):
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


def test_refuses_to_overwrite_a_run(tmp_path, tiny):
    train(tiny(tmp_path, run={"steps": 1}))
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        train(tiny(tmp_path, run={"steps": 2}))


def test_resume_with_other_model_is_refused(tmp_path, tiny):
    train(tiny(tmp_path, run={"steps": 1}))
    cfg = tiny(tmp_path, run={"steps": 2}, model={"family": "dcgan", "generator": {"z_dim": 4, "ngf": 8},
                                                   "discriminator": {"ndf": 4}})
    with pytest.raises(ConfigError, match=r"\[model\] differs"):
        train(cfg, resume=True)


def test_resume_from_a_checkpoint_older_than_a_new_recipe_setting(tmp_path, tiny):
    """A checkpoint written before a setting joined the recipe schema (``model.init_from`` here)
    resumes: the missing setting is its default, not a change of model."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    first = tiny(tmp_path, run={"steps": 1})
    train(first)
    _, path = list_checkpoints(os.path.join(first.run.out_dir, "checkpoints"))[-1]
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    skeleton = json.loads(meta["state"])
    del skeleton["config"]["model"]["init_from"]  # as an older imgsynth wrote it
    meta["state"] = json.dumps(skeleton)
    save_file(tensors, str(path), metadata=meta)
    result = train(tiny(tmp_path, run={"steps": 2}), resume=True)
    assert len(result.history) >= 1
    # a real change of model is still refused
    other = tiny(tmp_path, run={"steps": 3}, model={"family": "dcgan", "generator": {"z_dim": 4, "ngf": 8},
                                                     "discriminator": {"ndf": 4}})
    with pytest.raises(ConfigError, match=r"\[model\] differs"):
        train(other, resume=True)


def test_generator_that_does_not_fit_the_data(tmp_path, tiny):
    cfg = tiny(tmp_path, model={"generator": {"z_dim": 4, "ngf": 4, "img_channels": 3}})
    with pytest.raises(ConfigError, match=r"model.generator.img_channels = 3 does not match the data"):
        train(cfg)


@pytest.mark.parametrize("gan", GAN_LOSSES)
def test_every_loss_trains(tmp_path, gan, tiny):
    result = train(tiny(tmp_path, run={"steps": 2}, loss={"gan": gan, "r1_gamma": 0.1, "r1_every": 2}))
    assert all(np.isfinite(v) for rec in result.history for v in rec.values())
    assert {"d", "g", "r1"} <= set(result.history[-1])
    if gan == "wgan-gp":
        assert "gp" in result.history[-1]


def test_grad_clipping_and_ttur(tmp_path, tiny):
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


def test_bf16_autocast_on_cpu(tmp_path, final_state, native_precision, tiny):
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


def test_tensorboard_on_without_the_package(tmp_path, tiny):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        train(tiny(tmp_path, run={"steps": 1, "tensorboard": "on"}))


def test_unwritable_out_dir_is_an_output_error(tmp_path, tiny):
    from imgsynth.errors import OutputError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write to run.out_dir"):
        train(tiny(tmp_path, "file/run", run={"steps": 1}))


def test_unreadable_files_are_skipped_named_and_resume_says_the_data_changed(tmp_path, final_state):
    """A truncated and a garbage file in the folder: the run goes on, names them once, and counts them."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    good = (photos / "1.png").read_bytes()
    (photos / "1.png").write_bytes(good[: len(good) // 2])  # truncated
    (photos / "4.png").write_bytes(b"not an image at all")
    from imgsynth.training.config import from_dict

    def cfg(steps):
        return from_dict({
            "run": {"out_dir": str(tmp_path / "run"), "steps": steps, "grid_samples": 2, "log_every": 1},
            "data": {"source": "folder", "path": str(photos), "resolution": 8, "batch_size": 2},
            "model": {"family": "dcgan", "generator": {"z_dim": 4, "ngf": 4}, "discriminator": {"ndf": 4}},
        })

    messages = []
    result = train(cfg(4), progress=lambda p: messages.append(p.message) if p.kind == "info" else None)
    assert result.step == 4 and sorted(result.skipped) == [str(photos / "1.png"), str(photos / "4.png")]
    assert sum("skipped unreadable" in m and "1.png" in m for m in messages) == 1  # named once
    assert final_state(tmp_path / "run")["data_files"]["skipped"] == result.skipped
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(photos / "6.png")
    messages.clear()
    resumed = train(cfg(6), resume=True, progress=lambda p: messages.append(p.message) if p.kind == "info" else None)
    assert resumed.step == 6
    assert any("the data changed since the checkpoint (6 item(s) then, 7 now)" in m for m in messages)
    assert any("2 unreadable file(s) skipped before the checkpoint" in m for m in messages)


def test_numpy_and_python_generators_are_seeded_per_run(tmp_path, tiny, final_state):
    import random

    np.random.seed(123), random.seed(123)
    train(tiny(tmp_path, "a", run={"steps": 1}))
    np.random.seed(456), random.seed(456)
    train(tiny(tmp_path, "b", run={"steps": 1}))
    a, b = final_state(tmp_path / "a")["rng"][0], final_state(tmp_path / "b")["rng"][0]
    assert a["numpy"] == b["numpy"] and a["python"] == b["python"]  # the run's seed, not the caller's state


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [1.0] * 6),
    ("linear", [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]),  # pix2pix: niter = 2 constant steps, then niter_decay = 4
    ("cosine", [1.0, 1.0, 1.0, 0.5 * (1 + np.cos(np.pi / 4)), 0.5, 0.5 * (1 + np.cos(3 * np.pi / 4))]),
])
def test_learning_rate_schedules(tmp_path, tiny, schedule, expected, final_state, compare_runs):
    def cfg(out, steps):
        return tiny(tmp_path, out, run={"steps": steps, "log_every": 1},
                    optim={"lr_schedule": schedule, "lr_decay_start": 2 if schedule != "constant" else 0,
                           "g_lr": 1e-3, "d_lr": 2e-3})

    cfg6 = cfg("full", 6)
    trainer = Trainer(cfg6)
    np.testing.assert_allclose([trainer.lr_factor(s) for s in range(6)], expected, rtol=1e-6)
    if schedule == "constant":
        return
    full = train(cfg6)
    np.testing.assert_allclose([h["lr"] for h in full.history], [1e-3 * f for f in expected], rtol=1e-5)
    stopped = Trainer(cfg("split", 6), progress=lambda p: stopped.request_stop() if p.step == 3 else None)
    assert stopped.run().interrupted  # stopped at step 3 of 6 (as Ctrl-C does), then resumed
    train(cfg("split", 6), resume=True)
    compare_runs(final_state(tmp_path / "full"), final_state(tmp_path / "split"), history=False)


def write_pairs(root, n=10, size=36):
    rng = np.random.default_rng(0)
    for side in ("A", "B"):
        (root / side).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / "A" / f"{i}.png")
        Image.fromarray(255 - a).save(root / "B" / f"{i}.png")


def pix2pix_cfg(tmp_path, out, steps, **data):
    from imgsynth.training.config import from_dict

    return from_dict({
        "run": {"out_dir": str(tmp_path / out), "steps": steps, "checkpoint_every": 2, "grid_samples": 2},
        "data": {"source": "paired", "path": str(tmp_path / "A"), "path_b": str(tmp_path / "B"), "resolution": 32,
                 "load_size": 34, "hflip": True, "batch_size": 2, **data},
        "model": {"family": "pix2pix", "generator": {"num_downs": 5, "ngf": 4},
                  "discriminator": {"ndf": 4, "n_layers": 2}},
        "loss": {"l1": 100.0}, "optim": {"g_lr": 1e-2},
    })


def test_validation_on_held_out_items_keeps_the_best_checkpoint(tmp_path, final_state):
    write_pairs(tmp_path)
    events = []
    result = train(pix2pix_cfg(tmp_path, "run", 6, val_items=3),
                   progress=lambda p: events.append((p.kind, p.step, dict(p.losses))) if p.kind in ("val", "best") else None)
    vals = [e for e in events if e[0] == "val"]
    assert [e[1] for e in vals] == [2, 4, 6] and {"val_psnr", "val_ssim", "val_l1"} == set(vals[0][2])
    state = final_state(tmp_path / "run")
    history = state["validation"]["history"]
    best = max(history, key=lambda r: r["val_psnr"])
    assert state["validation"]["best"] == best
    assert (tmp_path / "run" / "validation.png").is_file()  # the validation curve beside losses.png
    (kept,) = list_checkpoints(tmp_path / "run" / "best")
    assert kept[0] == best["step"] == [e[1] for e in events if e[0] == "best"][-1]
    assert len(result.history) and all(0 < r["val_psnr"] < 60 and 0 <= r["val_l1"] <= 1 for r in history)
    # 7 items trained on (3 held out): the sampler's epoch has 3 batches of 2
    trainer = Trainer(pix2pix_cfg(tmp_path, "again", 1, val_items=3))
    trainer._setup()
    assert len(trainer.dataset) == 7 and len(trainer.val_dataset) == 3
    first, second = trainer.validate(), trainer.validate()
    assert first == second  # deterministic


def test_validation_folder_and_refusals(tmp_path):
    write_pairs(tmp_path)
    write_pairs(tmp_path / "val", n=2)
    trainer = Trainer(pix2pix_cfg(tmp_path, "run", 1, val_path=str(tmp_path / "val" / "A"),
                                  val_path_b=str(tmp_path / "val" / "B")))
    trainer._setup()
    assert len(trainer.dataset) == 10 and len(trainer.val_dataset) == 2 and trainer.validate()["val_psnr"] > 0
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        train(pix2pix_cfg(tmp_path, "all", 1, val_items=10))
    with pytest.raises(ConfigError, match="samples from noise"):
        from imgsynth.training.config import from_dict

        train(from_dict({"data": {"source": "folder", "path": str(tmp_path / "A"), "val_items": 2, "resolution": 8,
                                  "batch_size": 2}, "run": {"out_dir": str(tmp_path / "d"), "steps": 1}}))
