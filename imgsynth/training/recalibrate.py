"""Recompute the BatchNorm statistics of an exported generator on its training data.

A generator trained with batch norm (SPADE's default parameter-free norm) is run at inference with
the running mean and variance kept during training. The training loop averages them with the
same decay as the EMA weights (:class:`imgsynth.training.loop.EMA`), so an export's statistics
already belong to its weights. Re-estimating them with the final weights, frozen, over many
training batches (a cumulative average; Izmailov et al. 2018, "Averaging Weights Leads to Wider
Optima", Sec. 3.2, for averaged weights) is still useful for exports of runs whose EMA copied the
live network's statistics (trained before the EMA averaged them), or to re-estimate them on
other data.

It cannot repair a generator whose layers see the same input in every training batch: BatchNorm
maps such features to 0 in training whatever the weights, and no fixed statistics reproduce
that. The SPADE mosaic baseline trained with the official nearest latent sampling on a 1x1 grid
was such a case: recalibration took its export from 13.9 to 6.8 dB on held-out mosaics
(``benchmarks/results/translate.md``); ``latent_downsample = "area"`` removes the cause.

    python -m imgsynth.training.recalibrate examples/train/spade-fashion-labels.toml \\
        runs/spade-fashion-labels/export --batches 200

rewrites ``model.safetensors`` in place (same dtype) and prints its new sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgsynth.errors import ConfigError, ImgsynthError, WeightsError


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple]) -> int:
    """Reset every BatchNorm of ``model`` and average its statistics over ``batches`` of inputs.

    Each batch is a tuple of positional inputs. Only the BatchNorm buffers change (cumulative
    average, ``momentum=None``, as many batches as given); the model is left in eval mode with
    the original momenta. Returns the number of batches used; ConfigError when there were none
    or the model has no BatchNorm.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ConfigError("the model has no BatchNorm layers to recalibrate")
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    count = 0
    try:
        for inputs in batches:
            model(*inputs)
            count += 1
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.eval()
    if count == 0:
        raise ConfigError("no batches to recalibrate the BatchNorm statistics with")
    return count


def training_batches(recipe: str | Path, model: nn.Module, batches: int, seed: int = 0) -> Iterable[tuple]:
    """``batches`` generator inputs drawn from the recipe's training data, as the family feeds G.

    Items are drawn without replacement inside each batch by ``numpy.random.default_rng(seed)``,
    with the epoch-0 augmentation of the recipe's seed.
    """
    from imgsynth.training.config import load_recipe
    from imgsynth.training.data import build_dataset
    from imgsynth.training.families import get_family

    cfg = load_recipe(recipe)
    dataset = build_dataset(cfg.data, seed=cfg.run.seed)
    family = get_family(cfg.model.family)
    family.generator_config(cfg, dataset)  # sets how the family encodes a batch
    rng = np.random.default_rng(seed)
    ref = next(model.parameters())
    size = min(cfg.data.batch_size, len(dataset))
    for _ in range(batches):
        idx = rng.choice(len(dataset), size, replace=False)
        items = [dataset[(int(i), 0)] for i in idx]
        batch = {k: torch.stack([it[k] for it in items]).to(ref.device) for k in items[0]}
        inputs = family.generator_inputs(model, batch, torch.Generator().manual_seed(seed))
        yield tuple(x.to(ref.dtype) if x.is_floating_point() else x for x in inputs)


def recalibrate_export(recipe: str | Path, export_dir: str | Path, batches: int = 200, seed: int = 0) -> str:
    """Recalibrate the generator in ``export_dir`` (``imgsynth train --export``) on ``recipe``'s data.

    The statistics are estimated in fp32 and written back in the file's dtype. Returns the new
    sha256 of ``model.safetensors``.
    """
    from safetensors.torch import load_file, save_file

    from imgsynth.models.registry import build_model

    folder = Path(export_dir)
    try:
        meta = json.loads((folder / "config.json").read_text())
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{str(folder)!r} is not an imgsynth export (config.json + model.safetensors): {exc}") from None
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    model = build_model(meta["arch"], meta["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    recalibrate_batchnorm(model, training_batches(recipe, model, batches, seed))
    half = dtypes == {torch.float16}
    out = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous().clone()
           for k, v in model.state_dict().items()}
    path = folder / "model.safetensors"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(out, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m imgsynth.training.recalibrate RECIPE EXPORT_DIR [--batches N]``."""
    ap = argparse.ArgumentParser(prog="python -m imgsynth.training.recalibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("export_dir")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        print(recalibrate_export(a.recipe, a.export_dir, a.batches, a.seed))
    except ImgsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
