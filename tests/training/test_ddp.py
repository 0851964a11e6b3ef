"""Two gloo processes on CPU under torchrun: both ranks must end with identical weights."""

import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from imgsynth.training.checkpoint import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import json, os, sys
    from safetensors.torch import save_file
    from imgsynth.training.config import load_recipe
    from imgsynth.training.loop import Trainer

    recipe, out = sys.argv[1], sys.argv[2]
    trainer = Trainer(load_recipe(recipe))
    result = trainer.run()
    assert trainer.info.world_size == 2, trainer.info
    rank = trainer.info.rank
    tensors = {f"G.{k}": v for k, v in trainer.G.state_dict().items()}
    tensors.update({f"D.{k}": v for k, v in trainer.D.state_dict().items()})
    tensors.update({f"E.{k}": v for k, v in trainer.ema.model.state_dict().items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, f"rank{rank}.safetensors"))
    # a file per rank: the ranks' stdout lines can interleave in the shared pipe
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"step": result.step, "history": result.history}, f)
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_identical(tmp_path):
    fm = tmp_path / "fm"
    fm.mkdir()
    imgs = np.random.default_rng(0).integers(0, 256, (32, 28, 28), dtype=np.uint8)
    with gzip.open(fm / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 32, 28, 28) + imgs.tobytes())
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(textwrap.dedent(f"""
        [run]
        out_dir = "{tmp_path / 'run'}"
        steps = 3
        device = "cpu"
        log_every = 3
        grid_samples = 4
        [data]
        source = "fashion-mnist"
        path = "{fm}"
        resolution = 8
        load_size = 10
        hflip = true
        batch_size = 4
        [model]
        family = "dcgan"
        generator = {{z_dim = 4, ngf = 4}}
        discriminator = {{ndf = 4}}
        [loss]
        gan = "hinge"
        r1_gamma = 0.5
        [optim]
        ema_decay = 0.9
    """))
    (tmp_path / "worker.py").write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           str(tmp_path / "worker.py"), str(recipe), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # only rank 0 wrote the run's files, and its checkpoint holds both ranks' RNG states
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [s for s, _ in ckpts] == [3]
    state = load_checkpoint(ckpts[0][1])
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["noise"], state["rng"][1]["noise"])
    # rank 0's checkpoint is the state both ranks hold, after three optimiser steps
    for k, v in state["G"].items():
        assert torch.equal(v, r0[f"G.{k}"]), k
    assert all(int(st["step"]) == 3 for st in state["opt_g"]["state"].values())
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step-00000003.safetensors", "step-00000003.toml"]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in results] == [3, 3]
    assert results[0]["history"] == results[1]["history"]  # losses are averaged over the ranks
