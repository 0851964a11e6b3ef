#!/usr/bin/env python
"""Fréchet distance of Fashion-MNIST samplers in the feature space of our own classifier.

Inception weights cannot be downloaded here, so, as the Fashion-MNIST literature does for
domain-specific FID, we train a small CNN classifier on Fashion-MNIST *train* (seeded, a few
minutes on 2 CPU cores, cached in ~/.cache/imgsynth/fmnist-classifier.safetensors) and use its
128-d penultimate features. Reported beside each sampler: the real-vs-real distance (train subset
vs test) for scale. Figures are comparable inside this project only, not with published FIDs.

    apt-get install dataset-fashion-mnist
    python benchmarks/fid_fashion.py                 # every bundled sample model
    python benchmarks/fid_fashion.py --model dcgan-fashion-mnist [--weights DIR ...] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path("/usr/share/datasets/fashion-mnist")
CACHE = Path(os.environ.get("IMGSYNTH_CACHE", Path.home() / ".cache" / "imgsynth"))


from imgsynth.training.fid import Classifier  # noqa: E402  (the extractor training runs use too)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from imgsynth.training.data import read_idx

    prefix = "train" if split == "train" else "t10k"
    x = read_idx(DATA / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(DATA / f"{prefix}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(x.copy()).float().div(127.5).sub(1).unsqueeze(1)
    return F.pad(x, (2, 2, 2, 2), value=-1.0), torch.from_numpy(y.copy()).long()


def classifier(retrain: bool = False, items: int | None = None, epochs: int = 3,
               name: str = "fmnist-classifier", test_items: int | None = None) -> Classifier:
    """The feature network, trained once (Adam 1e-3, batches of 128, seed 0) on the first ``items``
    training images (all by default) for ``epochs`` epochs, cached as ``CACHE/<name>.safetensors``;
    its accuracy on the first ``test_items`` test images (all by default) goes to stderr."""
    from safetensors.torch import load_file, save_file

    path = CACHE / f"{name}.safetensors"
    net = Classifier()
    if path.exists() and not retrain:
        net.load_state_dict(load_file(str(path)))
        return net.eval()
    torch.manual_seed(0)
    x, y = load_split("train")
    x, y = x[:items], y[:items]
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xt, yt = load_split("test")
    xt, yt = xt[:test_items], yt[:test_items]
    with torch.no_grad():
        acc = float((torch.cat([net(xt[i:i + 1000]).argmax(1) for i in range(0, len(xt), 1000)]) == yt).float().mean())
    print(f"{name} test accuracy ({len(xt):,} images) {acc:.4f}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(path))
    return net


@torch.no_grad()
def features(net: Classifier, x: torch.Tensor) -> np.ndarray:
    # the 128-d penultimate layer before its ReLU: dense features, so the covariances are well conditioned
    trunk = net.features[:-1]
    return torch.cat([trunk(x[i : i + 500]) for i in range(0, len(x), 500)]).double().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² + Tr(Ca + Cb - 2 (Ca Cb)^½) (Heusel et al. 2017, Eq. 6)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(c1 @ c2, disp=False)
    if not np.isfinite(covmean).all():  # as pytorch-fid: regularise a singular product
        off = np.eye(c1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((c1 + off) @ (c2 + off))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def generate(model: str | None, weights: str | None, n: int) -> torch.Tensor:
    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.sample import Sampler

    loaded = load_model("sample", model=model, weights=Path(weights) if weights else None)
    s = Sampler(loaded.model)
    out = torch.cat([s.from_seeds(list(range(i, min(i + 500, n)))) for i in range(0, n, 500)])
    if out.shape[1] == 3:
        out = out.mean(1, keepdim=True)
    if out.shape[-1] != 32:
        out = F.interpolate(out, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="card id (repeatable)")
    ap.add_argument("--weights", action="append", default=[], help="export folder (repeatable)")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--md", type=Path, help="also write a Markdown table here")
    a = ap.parse_args()
    if not a.model and not a.weights:
        from imgsynth.engine.cards import load_cards

        a.model = sorted(c.id for c in load_cards().values()
                         if c.task == "sample" and c.source.kind == "bundled")
    torch.set_num_threads(2)
    net = classifier(a.retrain)
    xt, _ = load_split("test")
    xr, _ = load_split("train")
    ft = features(net, xt[: a.n])
    rows = [{"name": "real (train) vs real (test)", "fd": frechet(features(net, xr[: a.n]), ft)}]
    for m in a.model:
        t0 = time.perf_counter()
        rows.append({"name": m, "fd": frechet(features(net, generate(m, None, a.n)), ft),
                     "seconds": round(time.perf_counter() - t0, 1)})
    for w in a.weights:
        rows.append({"name": w, "fd": frechet(features(net, generate(None, w, a.n)), ft)})
    print(json.dumps({"n": a.n, "results": rows}, indent=1))
    if a.md:
        lines = [f"| sampler | Fréchet distance ({a.n} vs Fashion-MNIST test) | seconds |", "|---|---|---|"]
        lines += [f"| {r['name']} | {r['fd']:.3f} | {r.get('seconds', '')} |" for r in rows]
        a.md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
