#!/usr/bin/env python
"""Quality of the bundled translation defaults on held-out Fashion-MNIST items, mosaics and photos.

Everything runs through the same path as ``imgsynth translate`` (card -> ``load_model`` ->
``Translator.translate_one``), on data no model was trained on:

* **Label maps -> garments** (``spade-fashion-mnist``): the first ``--n`` items of the
  Fashion-MNIST *test* split as 32x32 label maps ``(x > 0) * (class + 1)``. PSNR and SSIM to the
  real garment on the central 28x28 (the padding would inflate both), grey level = mean of the
  output's RGB. **Label consistency**: the output is segmented back into a label map by a simple
  proxy, ``(grey > 12) * (classifier(output) + 1)``, where the classifier is the small CNN of
  ``benchmarks/fid_fashion.py`` (trained on the train split, cached); the score is the mean IoU
  over the 11 labels against the input map, beside the foreground IoU and the class accuracy.
  The same proxy on the real test images gives the ceiling (the classifier itself is imperfect).
* **Panoptic maps -> mosaics** (the bundled ``panoptic-mosaics``; with ``--panoptic-mosaics DIR``
  also a fresh export of its recipe; with ``--spade-mosaics DIR`` the SPADE baseline trained with
  the same recipe and budget, which sees semantic + instance edges): the
  first ``--mosaics`` mosaics of the *test* split (``FashionMosaics``, seed 1, 32x32, items
  14x14). PSNR/SSIM to the true mosaic, foreground IoU at the same threshold, and an
  **instance-separation** score on ``same_class_boundaries``: for every pair of 4-neighbours of one
  class but different instances, the step ``out(p) - out(q)`` against the true step
  ``real(p) - real(q)``: their correlation over all pairs (1 = every boundary reproduced with the
  right sign and relative size), the mean |step| relative to the real one, and the L1 error on
  the boundary pixels. A model that paints touching same-class items as one blob has small,
  uncorrelated steps there.
* **Edges -> photos** (``--edges-photos N``, a mode of its own: only this table; the bundled
  ``pix2pix-edges-photos``, with ``--edges-weights DIR`` also an export): the first ``N`` held-out
  photos of ``--photos-dir``/``--edges-split`` (``eval``: the 25 photos no model trains on), each
  resized (Lanczos) to a short side of twice the card's resolution, the scale of the training
  tiles' 256 px level, and centre-cropped to the resolution. The input is the crop's Canny map
  (``canny_edges``, as ``translate --input-kind edges``). PSNR on RGB and SSIM on luminance
  (``inpaint_bins.ssim``) to the real crop; **edge F1**: Canny of the output against the input
  edges, a pixel counting as matched within 1 px (3x3 neighbourhood). Baselines for scale: the
  mean colour of the training photos as a flat image, and the edge map itself as the output.
  The same mode then measures **colour clusters -> photos** on the same crops: the bundled
  ``pix2pix-clusters-photos`` (``--clusters-weights DIR`` adds an export), whose input is the
  crop's k-means poster (``colour_clusters`` with the card's ``io.clusters``, as ``translate
  --input-kind clusters``); baselines: the same flat colour, and the cluster map itself as the
  output (the model's own input, a strong baseline: it already has the right colours).

    apt-get install dataset-fashion-mnist
    python benchmarks/translate_quality.py [--n 1000] [--mosaics 500] [--spade-mosaics runs/spade-mosaics/export]
    python benchmarks/translate_quality.py --skip-labels --mosaics 100 \
        --panoptic-mosaics runs/panoptic-mosaics/export --spade-mosaics runs/spade-mosaics/export
    bash examples/inpaint/train/get_photos.sh data/photos
    python benchmarks/translate_quality.py --edges-photos 25 [--edges-weights runs/pix2pix-edges-photos/export] \
        [--clusters-weights runs/pix2pix-clusters-photos/export]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path("/usr/share/datasets/fashion-mnist")
THRESHOLD = 12  # grey level above which a pixel counts as garment in the consistency proxy
N_LABELS = 11


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 grey images (scikit-image, 7x7 window, data range 255)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255, win_size=7))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf-safe: a perfect match counts as 100 dB)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8, the channel mean (the models' outputs are grey as RGB)."""
    return np.round(rgb.astype(np.float64).mean(2)).astype(np.uint8)


def translator(model: str | None, weights: str | None):
    """The card ``model`` (offline, bundled) or an export folder, wrapped as ``imgsynth translate`` does."""
    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.translate import Translator

    torch.set_num_threads(2)
    loaded = load_model("translate", model=model, weights=Path(weights) if weights else None, offline=True,
                        device=torch.device("cpu"), dtype=torch.float32)
    return Translator(loaded.model, dict(loaded.io)), loaded


class IoU:
    """Intersection over union per label, accumulated over images."""

    def __init__(self, n: int) -> None:
        self.inter, self.union = np.zeros(n), np.zeros(n)

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        for c in range(len(self.inter)):
            p, t = pred == c, true == c
            self.inter[c] += (p & t).sum()
            self.union[c] += (p | t).sum()

    def mean(self) -> float:
        ok = self.union > 0
        return float((self.inter[ok] / self.union[ok]).mean())


def consistency(images: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Label-consistency proxy of (N, 32, 32) uint8 garments against their (N, 32, 32) label maps."""
    from benchmarks.fid_fashion import classifier

    net = classifier()
    x = torch.from_numpy(images).float()[:, None] / 127.5 - 1
    with torch.no_grad():
        pred_cls = torch.cat([net(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)]).numpy()
    iou, fg = IoU(N_LABELS), IoU(2)
    for img, lab, c in zip(images, labels, pred_cls):
        pred = (img > THRESHOLD) * (c + 1)
        iou.add(pred, lab)
        fg.add((img > THRESHOLD).astype(int), (lab > 0).astype(int))
    return {"label_miou": iou.mean(), "fg_iou": fg.mean(), "class_acc": float((pred_cls == classes).mean())}


def fashion_labels(n: int, card: str) -> dict[str, object]:
    """Label maps -> garments on the first ``n`` test items."""
    from imgsynth.pipelines.translate import TranslateInput
    from imgsynth.training.data import read_idx

    x = read_idx(DATA / "t10k-images-idx3-ubyte.gz")[:n]
    y = read_idx(DATA / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    labels = np.stack([np.pad((xi > 0) * (yi + 1), 2) for xi, yi in zip(x, y)])
    real = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    tr, loaded = translator(card, None)
    t0 = time.perf_counter()
    fake = np.stack([grey(tr.translate_one(TranslateInput(str(i), label=lab))[0]) for i, lab in enumerate(labels)])
    secs = (time.perf_counter() - t0) / n
    c = slice(2, 30)
    row = {
        "model": card, "items": n, "psnr": float(np.mean([psnr(f[c, c], r[c, c]) for f, r in zip(fake, real)])),
        "ssim": float(np.mean([ssim(f[c, c], r[c, c]) for f, r in zip(fake, real)])),
        **consistency(fake, labels, y), "s_per_image": secs,
    }
    ceiling = {"model": "real test images (ceiling)", "items": n, **consistency(real, labels, y)}
    return {"rows": [row, ceiling], "sha256": loaded.provenance().get("sha256")}


def step_pairs(semantic: np.ndarray, instance: np.ndarray) -> list[tuple[tuple, tuple]]:
    """Index pairs (p, q) of 4-neighbours with one class and different instances."""
    out = []
    for a, b in (((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                 ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))):
        hit = (semantic[a] == semantic[b]) & (instance[a] != instance[b]) & (semantic[a] > 0)
        out.append((a, b, hit))
    return out


@torch.no_grad()
def batch_statistics_outputs(tr, items: list, panoptic: bool, batch: int = 8) -> list[np.ndarray]:
    """Outputs with BatchNorm on the statistics of batches of ``batch`` held-out inputs, as in training.

    A diagnostic: it shows what the generator learned apart from its stored running statistics.
    """
    import copy

    model = copy.deepcopy(tr.model).train()
    out = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        x = torch.cat([tr.encode_labels(it) for it in chunk]).to(tr.dtype)
        args = (x,) + ((torch.stack([torch.from_numpy(it.panoptic.astype(np.int64)) for it in chunk]),)
                       if panoptic else ())
        y = model(*args).float().clamp(-1, 1)
        rgb = ((y + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out += [grey(r) for r in rgb]
    return out


def mosaics(m: int, models: list[tuple[str, str | None, str | None]], batch_stats: bool = False) -> list[dict[str, object]]:
    """Panoptic maps -> mosaics on the first ``m`` held-out mosaics, one row per model.

    ``batch_stats``: BatchNorm on batch statistics (:func:`batch_statistics_outputs`) instead.
    """
    from imgsynth.pipelines.translate import TranslateInput
    from imgsynth.training.config import DataConfig
    from imgsynth.training.data import FashionMosaics
    from imgsynth.training.mosaics import same_class_boundaries

    ds = FashionMosaics(DataConfig(source="mosaics", path=str(DATA), split="test", label_nc=N_LABELS,
                                   resolution=32, item_size=14))
    maps = [ds.mosaics(i) for i in range(m)]
    rows = []
    for name, card, weights in models:
        tr, _ = translator(card, weights)
        panoptic = bool(getattr(tr.model, "use_panoptic", False))
        items = [TranslateInput(str(i), label=mo.semantic, panoptic=mo.panoptic) if panoptic
                 else TranslateInput(str(i), label=mo.semantic, instance=mo.instance) for i, mo in enumerate(maps)]
        t0 = time.perf_counter()
        if batch_stats:
            fakes = batch_statistics_outputs(tr, items, panoptic)
            name = f"{name}, batch statistics"
        else:
            fakes = [grey(tr.translate_one(item)[0]) for item in items]
        secs = (time.perf_counter() - t0) / m
        fg = IoU(2)
        d_fake, d_real, boundary_err = [], [], []
        for f, mo in zip(fakes, maps):
            fg.add((f > THRESHOLD).astype(int), (mo.semantic > 0).astype(int))
            fi, ri = f.astype(np.float64), mo.image.astype(np.float64)
            for a, b, hit in step_pairs(mo.semantic, mo.instance):
                d_fake.append((fi[a] - fi[b])[hit])
                d_real.append((ri[a] - ri[b])[hit])
            bnd = same_class_boundaries(mo.semantic, mo.instance)
            boundary_err.append(np.abs(fi - ri)[bnd])
        df, dr = np.concatenate(d_fake), np.concatenate(d_real)
        rows.append({
            "model": name, "mosaics": m,
            "psnr": float(np.mean([psnr(f, mo.image) for f, mo in zip(fakes, maps)])),
            "ssim": float(np.mean([ssim(f, mo.image) for f, mo in zip(fakes, maps)])),
            "fg_iou": fg.mean(), "boundary_pairs": len(df),
            "step_corr": float(np.corrcoef(df, dr)[0, 1]) if df.std() > 0 else 0.0,
            "step_ratio": float(np.abs(df).mean() / np.abs(dr).mean()),
            "boundary_l1": float(np.concatenate(boundary_err).mean()), "s_per_image": secs,
        })
    return rows


def edge_f1(pred: np.ndarray, true: np.ndarray) -> float:
    """F1 of two boolean edge maps, a pixel of one matching when the other has an edge within 1 px."""
    import cv2

    def grow(m: np.ndarray) -> np.ndarray:
        return cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)

    if not pred.any() or not true.any():
        return float(pred.any() == true.any())
    precision, recall = (pred & grow(true)).sum() / pred.sum(), (true & grow(pred)).sum() / true.sum()
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def photo_crop(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the photo with its short side resized to 2 * size (Lanczos), centre crop."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
    k = 2 * size / min(im.size)
    im = im.resize((max(2 * size, round(im.width * k)), max(2 * size, round(im.height * k))), Image.LANCZOS)
    x0, y0 = (im.width - size) // 2, (im.height - size) // 2
    return np.asarray(im.crop((x0, y0, x0 + size, y0 + size))).copy()


def edges_photos(n: int, photos_dir: Path, split: str, weights: str | None,
                 clusters_weights: str | None = None) -> dict[str, list[dict[str, object]]]:
    """Edges -> photos and colour clusters -> photos on the first ``n`` photos of ``photos_dir/split``.

    Returns ``{"edges": rows, "clusters": rows}``: the bundled cards (and exports), each table with
    the flat mean-colour baseline and the model's own input as an output.
    """
    from benchmarks.inpaint_bins import ssim as ssim_luma
    from imgsynth.pipelines.translate import (
        CLUSTERS,
        TranslateInput,
        canny_edges,
        colour_clusters,
    )
    from imgsynth.training.data import list_images

    files = list_images(photos_dir / split)[:n]
    size = int(translator("pix2pix-edges-photos", None)[1].io["resolution"])
    crops = [photo_crop(p, size) for p in files]
    edges = [canny_edges(c) for c in crops]
    mean_colour = np.mean([photo_crop(p, size).reshape(-1, 3).mean(0) for p in list_images(photos_dir / "train")], 0)

    def row(name: str, outs: list[np.ndarray], secs: float | None = None) -> dict[str, object]:
        return {"model": name, "photos": len(crops),
                "psnr": float(np.mean([psnr(o, c) for o, c in zip(outs, crops)])),
                "ssim": float(np.mean([ssim_luma(o, c) for o, c in zip(outs, crops)])),
                "edge_f1": float(np.mean([edge_f1(canny_edges(o)[..., 0] == 0, e[..., 0] == 0)
                                          for o, e in zip(outs, edges)])),
                "s_per_image": secs}

    def model_rows(card: str, export: str | None) -> tuple[list[dict[str, object]], dict]:
        rows, io = [], {}
        for name, model, w in [(f"{card} (bundled)", card, None)] + ([(f"export {export}", None, export)] if export else []):
            tr, loaded = translator(model, w)
            io = io or loaded.io
            tr.translate_one(TranslateInput("warm-up", image=crops[0]))  # first-call set-up is not per-image cost
            t0 = time.perf_counter()
            outs = [tr.translate_one(TranslateInput(p.stem, image=c))[0] for p, c in zip(files, crops)]
            rows.append(row(name, outs, (time.perf_counter() - t0) / len(crops)))
        return rows, io

    flat = row("mean colour of the training photos (baseline)",
               [np.broadcast_to(np.round(mean_colour).astype(np.uint8), crops[0].shape)] * len(crops))
    edge_rows, _ = model_rows("pix2pix-edges-photos", weights)
    cluster_rows, io = model_rows("pix2pix-clusters-photos", clusters_weights)
    k = int(io.get("clusters", CLUSTERS))
    return {"edges": edge_rows + [flat, row("the edge map itself (baseline)", edges)],
            "clusters": cluster_rows + [flat, row(f"the {k}-colour cluster map itself (baseline)",
                                                  [colour_clusters(c, k) for c in crops])]}


def table(rows: list[dict[str, object]], cols: list[str]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="held-out Fashion-MNIST test items")
    ap.add_argument("--mosaics", type=int, default=500, help="held-out test mosaics")
    ap.add_argument("--spade-mosaics", default=None, help="export folder of the SPADE mosaic baseline")
    ap.add_argument("--panoptic-mosaics", default=None,
                    help="export folder of a panoptic-mosaics.toml run, measured beside the bundled card")
    ap.add_argument("--skip-labels", action="store_true", help="only the mosaic table (no label-map table)")
    ap.add_argument("--markdown", default=None, help="write the tables to this file too")
    ap.add_argument("--batch-stats", action="store_true",
                    help="add mosaic rows with BatchNorm on batch statistics of 8 held-out mosaics (diagnostic)")
    ap.add_argument("--edges-photos", type=int, default=0,
                    help="only measure edges -> photos, on this many held-out photos (25 in data/photos/eval)")
    ap.add_argument("--edges-split", default="eval", help="subfolder of --photos-dir (eval; val to pick checkpoints)")
    ap.add_argument("--edges-weights", default=None, help="export folder measured beside pix2pix-edges-photos")
    ap.add_argument("--clusters-weights", default=None, help="export folder measured beside pix2pix-clusters-photos")
    ap.add_argument("--photos-dir", default="data/photos", help="get_photos.sh output (train/, val/, eval/)")
    a = ap.parse_args()
    if a.edges_photos:
        rows = edges_photos(a.edges_photos, Path(a.photos_dir), a.edges_split, a.edges_weights, a.clusters_weights)
        print(json.dumps({"edges_photos": rows["edges"], "clusters_photos": rows["clusters"]}, indent=1))
        if a.markdown:
            cols = ["model", "photos", "psnr", "ssim", "edge_f1", "s_per_image"]
            Path(a.markdown).write_text(
                f"## Edges -> photos (held-out photos, {a.edges_split})\n\n" + table(rows["edges"], cols) + "\n\n"
                f"## Colour clusters -> photos (held-out photos, {a.edges_split})\n\n"
                + table(rows["clusters"], cols) + "\n")
        return 0
    fashion = {"rows": []} if a.skip_labels else fashion_labels(a.n, "spade-fashion-mnist")
    models = [("panoptic-mosaics (bundled)", "panoptic-mosaics", None)]
    if a.panoptic_mosaics:
        models.append(("panoptic-mosaics (export)", None, a.panoptic_mosaics))
    if a.spade_mosaics:
        models.append(("spade-mosaics (baseline)", None, a.spade_mosaics))
    mos = mosaics(a.mosaics, models)
    if a.batch_stats:
        mos += mosaics(a.mosaics, models, batch_stats=True)
    print(json.dumps({"labels": fashion["rows"], "mosaics": mos}, indent=1))
    if a.markdown:
        text = "" if a.skip_labels else (
            "## Label maps -> garments (Fashion-MNIST test items)\n\n"
            + table(fashion["rows"], ["model", "items", "psnr", "ssim", "label_miou", "fg_iou", "class_acc",
                                      "s_per_image"]) + "\n\n")
        text += ("## Panoptic maps -> mosaics (held-out test mosaics)\n\n"
                + table(mos, ["model", "mosaics", "psnr", "ssim", "fg_iou", "boundary_pairs", "step_corr",
                              "step_ratio", "boundary_l1", "s_per_image"]) + "\n")
        Path(a.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
