"""The ``progan`` training family: growing schedule, exact resume, the export at the grown depth."""

import pytest
import torch
from PIL import Image

from imgsynth.training.checkpoint import load_checkpoint
from imgsynth.training.loop import train


@pytest.fixture
def progan_cfg(tiny):
    """``progan_cfg(tmp_path, out, steps)``: a 3-scale (4, 8, 16 px) ProGAN recipe."""

    def make(tmp_path, out, steps):
        return tiny(tmp_path, out, run={"steps": steps, "grid_samples": 4, "sample_every": 3},
                    data={"resolution": 16, "load_size": 0},
                    model={"family": "progan", "generator": {"z_dim": 8, "channels": [8, 8, 4]}, "discriminator": {},
                           "options": {"steps_per_scale": 2, "fade_steps": 1, "drift": 0.001}},
                    loss={"gan": "wgan-gp"}, optim={"betas": [0.0, 0.99], "ema_decay": 0.9})

    return make


def test_progan_grows_and_resumes_exactly(tmp_path, final_state, compare_runs, progan_cfg):
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


def test_progan_export_holds_the_grown_depth(tmp_path, progan_cfg):
    from imgsynth.engine.loading import load_model
    from imgsynth.training.export import export

    train(progan_cfg(tmp_path, "run", 3))  # scales 0 and 1 grown: 8 px
    export(tmp_path / "run", tmp_path / "export")
    loaded = load_model("sample", weights=tmp_path / "export")
    assert loaded.config["channels"] == [8, 8]
    z = loaded.model.dummy_inputs(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert loaded.model(*z).shape == (2, 1, 8, 8)
