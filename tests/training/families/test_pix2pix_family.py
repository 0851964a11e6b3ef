"""The ``pix2pix`` training family: paired folders, conditional D, L1, the export."""

import numpy as np
from PIL import Image

from imgsynth.training.config import from_dict
from imgsynth.training.loop import train


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
