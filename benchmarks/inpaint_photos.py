#!/usr/bin/env python
"""Inpainting as users meet it: whole photos at their own resolution, through the real CLI.

    bash examples/inpaint/train/get_photos.sh data/photos          # held-out photos in data/photos/eval
    python benchmarks/inpaint_photos.py --photos data/photos/eval [--sizes 2048,native]
        [--settings object,large] [--methods default,telea,ns,patchmatch] [--min-side 1900]
        [--limit N] [--work DIR] [--out benchmarks/results/inpaint_photos.json] [--md FILE]

Every photo whose longer side is at least ``--min-side`` is used at two sizes: resized so its
longer side is 2048 px (``2048``) and as it is (``native``). Each gets a seeded mask per setting:

- ``object`` (object removal): two or three thick strokes (40-90 px wide at 2048 px) and one blob
  (a random polygon 250-450 px across), redrawn until the hole is 3-10 % of the photo;
- ``large``: strokes and blobs until the hole is 20-30 % of the photo.

Each method runs as one ``imgsynth inpaint PHOTOS/ --mask MASKS/ -o OUT/`` process over the whole
folder (a batch, process start, decoding and PNG encoding included), timed by the wall clock;
its peak RSS is the child's ``ru_maxrss``. ``default`` is the command without ``--model``.

Metrics, per photo, then averaged: PSNR and SSIM (luminance, 11x11 Gaussian window, sigma 1.5;
Wang et al. 2004) over the union of every hole component's bounding box grown by 16 px; the
texture ratio: the variance of the Laplacian of the result over the hole (its pixels at least 3 px
from the hole's edge: the seam is an artefact, not texture) divided by that of the real photo
(1 = as detailed as the photo, a smooth smear is near 0). A figure of crops
(original | methods ...) around the largest hole of the first photos is written with ``--figure``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"object": (0.03, 0.10), "large": (0.20, 0.30)}
REGION_GROW = 16
TEXTURE_BORDER = 3


def machine_line() -> str:
    """CPU model, vector flags, cores and load: printed beside every time."""
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vec = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}; flags {' '.join(vec) or 'none'}; {os.cpu_count()} CPUs; load {load:.2f}"


# --- masks -------------------------------------------------------------------------------------

def _stroke(mask: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    h, w = mask.shape
    width = int(round(rng.uniform(40, 90) * scale))
    x, y = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    angle = rng.uniform(0, 2 * np.pi)
    pts = [(x, y)]
    for v in range(int(rng.integers(3, 7))):
        angle += rng.uniform(0.2, 1.0) * (1 if v % 2 else -1)
        length = rng.uniform(80, 220) * scale
        x = float(np.clip(x + length * np.cos(angle), 0, w - 1))
        y = float(np.clip(y + length * np.sin(angle), 0, h - 1))
        pts.append((x, y))
    cv2.polylines(mask, [np.round(np.array(pts)).astype(np.int32)], False, 1, thickness=max(1, width),
                  lineType=cv2.LINE_8)


def _blob(mask: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    h, w = mask.shape
    r = rng.uniform(125, 225) * scale
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    n = int(rng.integers(7, 13))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.6, 1.0, n)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)


def photo_mask(shape: tuple[int, int], setting: str, seed: int) -> np.ndarray:
    """A seeded (H, W) bool hole for ``setting`` (``object`` or ``large``); sizes scale with the photo."""
    lo, hi = SETTINGS[setting]
    h, w = shape
    scale = max(h, w) / 2048.0
    rng = np.random.default_rng(seed)
    for _ in range(200):
        mask = np.zeros((h, w), np.uint8)
        if setting == "object":
            for _ in range(int(rng.integers(2, 4))):
                _stroke(mask, rng, scale)
            _blob(mask, rng, scale)
        while mask.mean() <= lo:
            (_blob if rng.random() < 0.5 else _stroke)(mask, rng, scale * (1.6 if setting == "large" else 1.0))
        if mask.mean() <= hi:
            return mask.astype(bool)
    raise RuntimeError(f"could not draw a {setting} mask for {w}x{h}")


# --- metrics -----------------------------------------------------------------------------------

def region_of(hole: np.ndarray, grow: int = REGION_GROW) -> np.ndarray:
    """The union of every hole component's bounding box grown by ``grow`` pixels."""
    region = np.zeros_like(hole, bool)
    n, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    h, w = hole.shape
    for x, y, bw, bh, _ in stats[1:]:
        region[max(0, y - grow):min(h, y + bh + grow), max(0, x - grow):min(w, x + bw + grow)] = True
    return region


def _gray(a: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)


def region_psnr(out: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    d = out[region].astype(np.float64) - truth[region].astype(np.float64)
    return float(10 * np.log10(255.0**2 / max(float(np.mean(d * d)), 1e-10)))


def region_ssim(out: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """Mean of the SSIM map (luminance, Wang et al. 2004) over ``region``."""
    ya, yb = _gray(out), _gray(truth)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(ya), blur(yb)
    saa, sbb, sab = blur(ya * ya) - mu_a**2, blur(yb * yb) - mu_b**2, blur(ya * yb) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(m[region].mean())


def texture_ratio(out: np.ndarray, truth: np.ndarray, hole: np.ndarray, border: int = TEXTURE_BORDER) -> float:
    """var(Laplacian(result)) / var(Laplacian(photo)) over the hole pixels at least ``border``
    pixels inside the hole (the seam at the hole's edge is an artefact, not texture)."""
    inner = cv2.erode(hole.astype(np.uint8), np.ones((2 * border + 1,) * 2, np.uint8)).astype(bool)
    inner = inner if inner.any() else hole
    la = cv2.Laplacian(_gray(out), cv2.CV_32F)[inner]
    lb = cv2.Laplacian(_gray(truth), cv2.CV_32F)[inner]
    return float(la.var() / max(float(lb.var()), 1e-12))


# --- running -----------------------------------------------------------------------------------

def prepare(photos: list[Path], size: str, setting: str, work: Path, seed: int) -> Path:
    """Write ``work/SIZE-SETTING/{photos,masks}`` (PNG, lossless) and return that folder."""
    base = work / f"{size}-{setting}"
    (base / "photos").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(photos):
        dst, mdst = base / "photos" / f"{p.stem}.png", base / "masks" / f"{p.stem}.png"
        if dst.exists() and mdst.exists():
            continue
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if size != "native":
            s = int(size) / max(bgr.shape[:2])
            bgr = cv2.resize(bgr, (round(bgr.shape[1] * s), round(bgr.shape[0] * s)), interpolation=cv2.INTER_AREA)
        hole = photo_mask(bgr.shape[:2], setting, seed * 1000 + i)
        cv2.imwrite(str(dst), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        cv2.imwrite(str(mdst), hole.astype(np.uint8) * 255)
    return base


def run_method(method: str, base: Path, out: Path, extra: list[str], timeout: float) -> dict:
    """One CLI process over the folder: wall seconds, its own peak RSS (MB, ``os.wait4``), exit code."""
    cmd = [sys.executable, "-m", "imgsynth", "inpaint", str(base / "photos"), "--mask", str(base / "masks"),
           "-o", str(out), "--overwrite", "--quiet"]
    if method != "default":
        cmd += ["--model", method]
    cmd += extra
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    status = usage = None
    while True:
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, usage = st, ru
            break
        if time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "rc": proc.returncode,
            "timed_out": wall > timeout, "stderr": err[-500:]}


def score(base: Path, out: Path) -> list[dict]:
    rows = []
    for p in sorted((base / "photos").glob("*.png")):
        res = out / p.name
        truth = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1]
        hole = cv2.imread(str(base / "masks" / p.name), cv2.IMREAD_GRAYSCALE) >= 128
        if not res.exists():
            rows.append({"photo": p.stem, "missing": True})
            continue
        img = cv2.imread(str(res), cv2.IMREAD_COLOR)[..., ::-1]
        region = region_of(hole)
        rows.append({"photo": p.stem, "size": f"{truth.shape[1]}x{truth.shape[0]}", "hole": float(hole.mean()),
                     "psnr": region_psnr(img, truth, region), "ssim": region_ssim(img, truth, region),
                     "texture": texture_ratio(img, truth, hole),
                     "known_exact": bool(np.array_equal(img[~hole], truth[~hole]))})
    return rows


def figure(cases: list[tuple[Path, Path]], methods: list[str], outs: dict[str, Path], dest: Path, side: int = 384) -> None:
    """Crops around the largest hole: original | each method, one row per photo."""
    rows = []
    for base, photo in cases:
        truth = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        hole = cv2.imread(str(base / "masks" / photo.name), cv2.IMREAD_GRAYSCALE) >= 128
        n, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
        k = 1 + int(np.argmax(stats[1:, 4]))
        x, y, bw, bh, _ = stats[k]
        s = min(max(bw, bh) + 2 * 48, min(truth.shape[:2]))
        cy, cx = y + bh // 2, x + bw // 2
        y0 = int(np.clip(cy - s // 2, 0, truth.shape[0] - s))
        x0 = int(np.clip(cx - s // 2, 0, truth.shape[1] - s))
        tiles = [truth]
        for m in methods:
            p = outs[m] / photo.name
            tiles.append(cv2.imread(str(p), cv2.IMREAD_COLOR) if p.exists() else np.zeros_like(truth))
        crops = [cv2.resize(t[y0:y0 + s, x0:x0 + s], (side, side), interpolation=cv2.INTER_AREA if s > side
                            else cv2.INTER_NEAREST) for t in tiles]
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in crops], 1))
    head = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for i, name in enumerate(["original", *methods]):
        cv2.putText(head, name, (i * (side + 4) + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(dest), np.concatenate([head, *rows], 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--sizes", default="2048,native")
    ap.add_argument("--settings", default="object,large")
    ap.add_argument("--methods", default="default,telea,ns,patchmatch")
    ap.add_argument("--extra", default="", help="extra CLI options for every network method, e.g. '--strategy crops'")
    ap.add_argument("--min-side", type=int, default=1900)
    ap.add_argument("--limit", type=int, default=0, help="use the first N photos only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per method and folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsynth-inpaint-photos"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--figure", type=Path, help="PNG of crops (2048, object setting)")
    a = ap.parse_args()

    photos = []
    for p in sorted(a.photos.iterdir()):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
            im = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if im is not None and max(im.shape[:2]) >= a.min_side:
                photos.append(p)
    if a.limit:
        photos = photos[: a.limit]
    if not photos:
        print(f"error: {a.photos}: no photo with a side of at least {a.min_side} px", file=sys.stderr)
        return 1
    machine = machine_line()
    print(f"{len(photos)} photos; {machine}", flush=True)
    methods = [m for m in a.methods.split(",") if m]
    table, outs_fig = [], {}
    for size in a.sizes.split(","):
        for setting in a.settings.split(","):
            base = prepare(photos, size, setting, a.work, a.seed)
            for m in methods:
                out = a.work / "out" / f"{size}-{setting}" / m.replace("/", "_")
                extra = a.extra.split() if m not in ("telea", "ns", "patchmatch") else []
                run = run_method(m, base, out, extra, a.timeout)
                rows = score(base, out)
                done = [r for r in rows if not r.get("missing")]
                row = {"size": size, "setting": setting, "method": m, "photos": len(rows), "done": len(done),
                       "s_per_photo": run["wall_s"] / max(1, len(rows)), "peak_rss_mb": run["peak_rss_mb"],
                       "rc": run["rc"], "timed_out": run["timed_out"], "per_photo": rows}
                for k in ("psnr", "ssim", "texture", "hole"):
                    row[k] = float(np.mean([r[k] for r in done])) if done else float("nan")
                row["known_exact"] = all(r["known_exact"] for r in done)
                if run["rc"] != 0:
                    row["stderr"] = run["stderr"]
                table.append(row)
                if size == "2048" and setting == "object":
                    outs_fig[m] = out
                print(f"{size:>6} {setting:6} {m:12} PSNR {row['psnr']:6.2f} SSIM {row['ssim']:.4f} "
                      f"texture {row['texture']:.3f} {row['s_per_photo']:7.2f} s/photo "
                      f"{row['peak_rss_mb']:7.0f} MB rc={run['rc']} ({row['done']}/{row['photos']})", flush=True)
    if a.figure and outs_fig:
        base = a.work / "2048-object"
        figure([(base, base / "photos" / f"{p.stem}.png") for p in photos[:4]], list(outs_fig), outs_fig, a.figure)
    result = {"machine": machine, "photos": [p.name for p in photos], "seed": a.seed, "extra": a.extra,
              "rows": table}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    if a.md:
        lines = [f"Machine: {machine}", "", f"{len(photos)} held-out photos ({', '.join(p.stem for p in photos)})", "",
                 "| size | setting | method | PSNR | SSIM | texture | s/photo | peak RSS MB | done |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in table:
            lines.append(f"| {r['size']} | {r['setting']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                         f"{r['texture']:.3f} | {r['s_per_photo']:.2f} | {r['peak_rss_mb']:.0f} | "
                         f"{r['done']}/{r['photos']} |")
        a.md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
