#!/usr/bin/env python
"""Adaptive discriminator augmentation on little data: the same run with and without ADA.

Writes the first ``--n`` Fashion-MNIST training images as PNG files (a folder of "own images"),
trains the same recipe twice for the same number of steps (``augment.ada = "on"`` and ``"off"``,
everything else equal, the two runs side by side, one thread each, ``nice``), exports every
checkpoint (EMA generator) and measures its Fréchet distance to the Fashion-MNIST test set with
``benchmarks/fid_fashion.py`` (10,000 samples, the project's own classifier features).

    apt-get install dataset-fashion-mnist
    python benchmarks/ada_fashion.py --n 1000 --minutes 25 --md benchmarks/results/ada.md

With ``--minutes`` both runs are stopped (Ctrl-C, which writes a checkpoint) after that much wall
time, and the comparison is at the checkpoints both runs reached (same steps = same budget).

The paper's claim (Karras et al. 2020, Fig. 1 and 7): with few training images the discriminator
overfits, Fréchet distance rises again during training, and ADA prevents that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fid_fashion import DATA, classifier, features, frechet, generate, load_split  # noqa: E402


def write_images(out: Path, n: int) -> Path:
    from PIL import Image

    from imgsynth.training.idx import read_idx

    out.mkdir(parents=True, exist_ok=True)
    x = read_idx(DATA / "train-images-idx3-ubyte.gz")[:n]
    for i, im in enumerate(x):
        path = out / f"{i:05d}.png"
        if not path.exists():
            Image.fromarray(im, "L").save(path)
    return out


def quick_classifier():
    """fid_fashion's ``Classifier`` trained the same way for 1 epoch on the first 20,000 training images."""
    return classifier(items=20000, epochs=1, name="fmnist-classifier-quick-1x20k", test_items=2000)


def recipe_args(work: Path, images: Path, ada: str, a: argparse.Namespace) -> list[str]:
    sets = {
        "run.out_dir": str(work / f"ada-{ada}"), "run.steps": a.steps, "run.log_every": 50,
        "run.sample_every": a.every, "run.checkpoint_every": a.every, "run.keep_checkpoints": 0,
        "data.source": "folder", "data.path": str(images), "data.name": f"fashion-mnist-first-{a.n}",
        "augment.ada": ada, "augment.kimg": a.kimg, "augment.target": 0.6,
    }
    out = [str(ROOT / "examples" / "train" / a.recipe)]
    for k, v in sets.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    for item in a.extra:
        out += ["--set", item]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="training images (the first n of Fashion-MNIST train)")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop both runs after this wall time (0: run all steps)")
    ap.add_argument("--every", type=int, default=300, help="checkpoint (and evaluate) every this many steps")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="more recipe overrides (both runs)")
    ap.add_argument("--kimg", type=float, default=10.0, help="augment.kimg (p from 0 to 1 in this many k images)")
    ap.add_argument("--recipe", default="dcgan-fashion-mnist.toml")
    ap.add_argument("--work", type=Path, default=Path("runs/ada-fashion"))
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--skip-train", action="store_true", help="evaluate the runs already in --work")
    ap.add_argument("--quick-features", action="store_true",
                    help="features of fid_fashion's classifier trained for 1 epoch on 20,000 images (cached "
                         "separately) instead of its 3 epochs on 60,000: for a loaded machine; comparable "
                         "between the two runs here, not with benchmarks/results/fid_fashion.md")
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    images = write_images(a.work / f"fashion-mnist-{a.n}", a.n)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if not a.skip_train:
        procs = {}
        for ada in ("off", "on"):
            log = open(a.work / f"ada-{ada}.log", "w")
            procs[ada] = subprocess.Popen(
                ["nice", "-n", "19", sys.executable, "-m", "imgsynth", "train", *recipe_args(a.work, images, ada, a)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if a.minutes > 0:
            deadline = t0 + a.minutes * 60
            while time.perf_counter() < deadline and any(p.poll() is None for p in procs.values()):
                time.sleep(5)
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)  # finishes the step, writes a checkpoint
        for ada, p in procs.items():
            if p.wait() not in (0, 130):
                print(f"training with ada={ada} failed; see {a.work}/ada-{ada}.log", file=sys.stderr)
                return 1
    train_s = time.perf_counter() - t0
    load_after = os.getloadavg()

    import torch

    torch.set_num_threads(1)
    net = quick_classifier() if a.quick_features else classifier()
    xt, _ = load_split("test")
    ft = features(net, xt[: a.samples])
    rows = []
    from imgsynth.training.checkpoint import list_checkpoints, load_checkpoint
    from imgsynth.training.export import export

    reached = [{s for s, _ in list_checkpoints(a.work / f"ada-{ada}" / "checkpoints")} for ada in ("off", "on")]
    common = reached[0] & reached[1]
    for ada in ("off", "on"):
        run = a.work / f"ada-{ada}"
        for step, ckpt in list_checkpoints(run / "checkpoints"):
            if step not in common:
                continue
            out = run / f"export-{step:08d}"
            if not (out / "model.safetensors").exists():
                export(ckpt, out)
            fd = frechet(features(net, generate(None, str(out), a.samples)), ft)
            state = load_checkpoint(ckpt)
            hist = state["history"][-1] if state["history"] else {}
            batch = int(state["config"]["data"]["batch_size"])
            rows.append({"ada": ada, "step": step, "images_seen": step * batch, "fd": fd,
                         "p": hist.get("ada_p"), "rt": hist.get("ada_rt")})
            print(json.dumps(rows[-1]), file=sys.stderr)
    record = {
        "features": "quick classifier (1 epoch, 20k images)" if a.quick_features else "fid_fashion classifier",
        "n_train": a.n, "steps": a.steps, "recipe": a.recipe, "kimg": a.kimg, "samples": a.samples,
        "train_wall_s": round(train_s, 1), "load_before": load_before, "load_after": load_after,
        "cpu": platform.processor() or platform.machine(), "results": rows,
    }
    text = json.dumps(record, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    if a.md:
        lines = ["| step | real images shown to D | FD without ADA | FD with ADA | p (ADA run) | r_t (ADA run) |",
                 "|---|---|---|---|---|---|"]
        by = {(r["ada"], r["step"]): r for r in rows}
        for step in sorted({r["step"] for r in rows}):
            off, on = by.get(("off", step)), by.get(("on", step))
            lines.append(
                f"| {step} | {off['images_seen']:,} | {off['fd']:.3f} | {on['fd']:.3f} | "
                f"{on['p'] if on['p'] is None else round(on['p'], 3)} | "
                f"{on['rt'] if on['rt'] is None else round(on['rt'], 3)} |" if off and on else f"| {step} | | | | | |")
        a.md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
