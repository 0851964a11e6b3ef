"""Training speed of the DCGAN Fashion-MNIST recipe on this machine, as JSON.

    python benchmarks/train_speed.py                      # fp32, the recipe's settings
    python benchmarks/train_speed.py --precision bf16 --steps 60 --warmup 10

Runs a short training (``--warmup`` steps not timed, then ``--steps`` timed) of
``examples/train/dcgan-fashion-mnist.toml`` into a temporary folder and prints one JSON record:
images/s (real images through the discriminator per second, i.e. batch x D steps / step time),
seconds per step, and the settings. Uses the real Fashion-MNIST files when installed
(``apt-get install dataset-fashion-mnist``), otherwise random 28x28 IDX images of the same shape
(the speed does not depend on the pixel values).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "train" / "dcgan-fashion-mnist.toml"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--steps", type=int, default=40, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 | auto (default: the recipe's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()  # as `imgsynth train` does, before torch is imported
    import torch

    from imgsynth.training.config import load_recipe
    from imgsynth.training.loop import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = FASHION
        synthetic = not (FASHION / "train-images-idx3-ubyte.gz").exists()
        if synthetic:
            import numpy as np

            data = Path(tmp) / "fm"
            data.mkdir()
            imgs = np.random.default_rng(0).integers(0, 256, (2048, 28, 28), dtype=np.uint8)
            with gzip.open(data / "train-images-idx3-ubyte.gz", "wb") as f:
                f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2048, 28, 28) + imgs.tobytes())
        overrides = [
            f"run.out_dir={json.dumps(str(Path(tmp) / 'run'))}",
            f"run.steps={args.warmup + args.steps}",
            f"run.device={json.dumps(args.device)}",
            "run.sample_every=1000000", "run.checkpoint_every=1000000", "run.log_every=1000000",
            "run.tensorboard=\"off\"", f"data.path={json.dumps(str(data))}",
        ]
        if args.precision:
            overrides.append(f"run.precision={json.dumps(args.precision)}")
        if args.workers is not None:
            overrides.append(f"data.workers={args.workers}")
        cfg = load_recipe(args.recipe, overrides)
        times: dict[int, float] = {}

        def progress(p):  # noqa: ANN001
            if p.kind == "step":
                if p.step == args.warmup or p.step == args.warmup + args.steps:
                    if torch.cuda.is_available() and cfg.run.device != "cpu":
                        torch.cuda.synchronize()
                    times[p.step] = time.perf_counter()

        result = Trainer(cfg, progress=progress).run()
        elapsed = times[args.warmup + args.steps] - times[args.warmup]
    per_step = cfg.data.batch_size * cfg.loss.d_steps
    record = {
        "benchmark": "train_speed",
        "recipe": str(args.recipe.relative_to(ROOT) if args.recipe.is_relative_to(ROOT) else args.recipe),
        "images_per_s": round(args.steps * per_step / elapsed, 1),
        "s_per_step": round(elapsed / args.steps, 4),
        "steps_timed": args.steps,
        "batch_size": cfg.data.batch_size,
        "resolution": cfg.data.resolution,
        "precision": result.precision,
        "device": result.device,
        "workers": cfg.data.workers,
        "threads": torch.get_num_threads(),
        "data": "synthetic" if synthetic else "fashion-mnist",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
