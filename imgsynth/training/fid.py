"""Fréchet distance of Fashion-MNIST samplers in the features of the project's own classifier.

The feature extractor is the small CNN of ``benchmarks/fid_fashion.py`` (Inception weights cannot
be downloaded here): 32x32 grey inputs in [-1, 1], the 128-d penultimate layer before its ReLU.
That benchmark trains it once on Fashion-MNIST train and caches it in
``$IMGSYNTH_CACHE/fmnist-classifier.safetensors`` (default ``~/.cache/imgsynth``); training runs on
Fashion-MNIST then log the distance of the EMA generator's samples to the test set with the same
features, so figures in a run's log and in ``benchmarks/results/fid_fashion.md`` are comparable.

The distance is ``||mu_a - mu_b||^2 + Tr(Ca + Cb - 2 (Ca Cb)^1/2)`` (Heusel et al. 2017, Eq. 6),
with the trace of the matrix square root taken from the eigenvalues of the symmetric
``Ca^1/2 Cb Ca^1/2`` (the same eigenvalues as ``Ca Cb``), so no scipy is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Classifier(nn.Module):
    """Small CNN on 32x32 grayscale (Fashion-MNIST padded 28 -> 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(128, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 1, 32, 32) in [-1, 1] -> (N, 10) class logits."""
        return self.head(self.features(x))


def cache_path() -> Path:
    """Where ``benchmarks/fid_fashion.py`` caches the trained classifier."""
    root = Path(os.environ.get("IMGSYNTH_CACHE", Path.home() / ".cache" / "imgsynth"))
    return root / "fmnist-classifier.safetensors"


def load_classifier(path: Path | None = None) -> Classifier | None:
    """The cached classifier in eval mode, or None when it has not been trained here yet."""
    from safetensors.torch import load_file

    path = path or cache_path()
    if not path.is_file():
        return None
    net = Classifier()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def to_classifier_input(images: Tensor) -> Tensor:
    """Images in [-1, 1] (N, 1 or 3, H, W) -> (N, 1, 32, 32) grey, as the benchmark feeds them."""
    x = images.float().clamp(-1, 1)
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return x


@torch.no_grad()
def features(net: Classifier, x: Tensor, batch: int = 500) -> Tensor:
    """128-d penultimate features (before the ReLU) of (N, 1, 32, 32) images, float64."""
    trunk = net.features[:-1]
    return torch.cat([trunk(x[i : i + batch]) for i in range(0, len(x), batch)]).double()


def _sqrtm_psd(c: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (N, D)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    root = _sqrtm_psd(ca)
    eig = torch.linalg.eigvalsh(root @ cb @ root)
    tr_sqrt = eig.clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + torch.trace(ca) + torch.trace(cb) - 2 * tr_sqrt)


def test_set_features(net: Classifier, root: str | Path, n: int) -> Tensor:
    """Features of the first ``n`` Fashion-MNIST test images in ``root`` (padded 28 -> 32 with -1)."""
    from imgsynth.training.idx import fashion_mnist_files, read_idx

    x = torch.from_numpy(read_idx(fashion_mnist_files(root, "test"))[:n].copy()).float().div(127.5).sub(1)
    x = F.pad(x.unsqueeze(1), (2, 2, 2, 2), value=-1.0)
    return features(net, x)
