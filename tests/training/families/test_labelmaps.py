"""The label-map families (``pix2pixhd``, ``spade``) on paired label folders with instance maps."""

import numpy as np
import pytest
from PIL import Image

from imgsynth.training.config import from_dict
from imgsynth.training.loop import train


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
