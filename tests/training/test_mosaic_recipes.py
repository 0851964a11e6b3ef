"""The SPADE and panoptic mosaic recipes: their generators must not start from a batch-constant input.

With the official nearest sampling, a 1x1 latent grid reads only the top-left pixel of the label
map, which is background in every mosaic: the first blocks then see the same input in every
batch, BatchNorm maps them to 0 in training whatever the weights, and the eval-mode (running
statistics) output of the SPADE baseline collapsed. ``latent_downsample = "area"`` fixes that.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from imgsynth.training.config import from_dict, load_recipe
from imgsynth.training.data import build_dataset
from imgsynth.training.families import get_family

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "train"


def _write_idx(path: Path, array: np.ndarray) -> None:
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fashion_like(root: Path, n: int = 16) -> None:
    """Garment-like items: a bright block on black (so, as in Fashion-MNIST, mosaic corners stay background)."""
    rng = np.random.default_rng(0)
    imgs = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        t, left = rng.integers(2, 10, 2)
        imgs[i, t : t + 14, left : left + 12] = rng.integers(1, 256, (14, 12))
    root.mkdir(parents=True, exist_ok=True)
    _write_idx(root / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(root / "train-labels-idx1-ubyte.gz", np.arange(n) % 10)


@pytest.mark.parametrize("recipe", ["spade-mosaics.toml", "panoptic-mosaics.toml"])
def test_recipe_generator_head_varies_across_a_batch_of_mosaics(tmp_path, recipe):
    _fashion_like(tmp_path / "fm")
    raw = load_recipe(RECIPES / recipe).to_dict()
    raw["data"]["path"] = str(tmp_path / "fm")
    cfg = from_dict(raw)
    dataset = build_dataset(cfg.data, seed=cfg.run.seed)
    family = get_family(cfg.model.family)
    torch.manual_seed(0)
    G = family.build_generator(family.generator_config(cfg, dataset))
    family.init_weights(G)
    assert (G.sh, G.sw) == (1, 1)  # the setting where the corner sample is all fc would see
    items = [dataset[(i, 0)] for i in range(cfg.data.batch_size)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    assert int(batch["label"][:, 0, 0, 0].max()) == 0 and int(batch["label"][:, 0, 0, -1].max()) == 0
    seen = []
    hook = G.head_0.norm_0.param_free_norm.register_forward_hook(lambda _m, i, _o: seen.append(i[0]))
    with torch.no_grad():
        G.train()(*family.generator_inputs(G, batch, torch.Generator()))
    hook.remove()
    # every channel of the first BatchNorm has a batch variance to normalise (0 with the corner sample)
    assert float(seen[0].var(0).min()) > 0
