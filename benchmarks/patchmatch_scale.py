"""PatchMatch at photo scale: seconds and peak RSS on 2048-px and native-size (up to 12+ MP) photos.

    python benchmarks/patchmatch_scale.py --photos DIR_OR_FILES... [--sizes 2048,native]
        [--masks object,large] [--backends numba] [--out benchmarks/results/patchmatch_scale.md]

Every (photo, size, mask, backend) runs in a fresh Python process, so its peak RSS (ru_maxrss)
is that of one inpainting call plus the interpreter and imports, and its time includes no warm-up
from earlier runs (numba's kernels come from the on-disk cache; a first-ever run compiles them,
timed once before the runs). Beside each time: OpenCV Telea on the same photo and mask in
the same child process (a same-run baseline), and the texture ratio inside the hole (variance of
the Laplacian of the fill over that of the real photo; a smear is near 0).

Photos used for the published table (evaluation only, no training): Debian
``lomiri-wallpapers-16.04`` (``apt-get download lomiri-wallpapers-16.04; dpkg-deb -x *.deb x``),
files under ``x/usr/share/backgrounds/``.
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

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import cv2, numpy as np
args = json.loads(sys.argv[2])
from benchmarks.patchmatch_scale import load_case, texture_ratio, psnr_box
image, hole = load_case(args["photo"], args["size"], args["mask"], args["seed"])
t0 = time.perf_counter()
telea = cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
t_telea = time.perf_counter() - t0
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from imgsynth.models.patchmatch import patchmatch_inpaint
last = [0.0]
def progress(f):
    now = time.perf_counter() - t0
    if now - last[0] > 5.0:
        last[0] = now
        print(f"  {args['photo'].split('/')[-1]} {args['size']} {args['mask']}: {100 * f:5.1f} % after {now:.0f} s",
              file=sys.stderr, flush=True)
t0 = time.perf_counter()
c0 = time.process_time()
out = patchmatch_inpaint(image, hole, seed=args["seed"], backend=args["backend"], progress=progress)
seconds = time.perf_counter() - t0
cpu = time.process_time() - c0
print(json.dumps({
    "h": image.shape[0], "w": image.shape[1], "hole": float(hole.mean()), "seconds": seconds, "cpu_seconds": cpu,
    "telea_seconds": t_telea, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_before_mb": rss_before / 1024,
    "texture": texture_ratio(out, image, hole), "texture_telea": texture_ratio(telea, image, hole),
    "psnr": psnr_box(out, image, hole), "psnr_telea": psnr_box(telea, image, hole),
}))
"""


def load_case(photo: str, size: str, mask: str, seed: int):
    """The photo at ``size`` (``"2048"``: long side 2048, area-resized; ``"native"``) and an
    object-removal (3-10 %: thick strokes and a blob) or large-hole (20-30 %) mask."""
    import cv2
    import numpy as np

    bgr = cv2.imread(photo, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: {photo}: cannot read")
    if size != "native":
        long_side = int(size)
        scale = long_side / max(bgr.shape[:2])
        if scale < 1:
            bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(bgr[..., ::-1])
    return image, make_mask(image.shape[:2], mask, seed)


def make_mask(shape, kind: str, seed: int):
    """Deterministic hole masks: ``object`` (a blob and two thick strokes, 3-10 % of the photo)
    or ``large`` (blobs and strokes, 20-30 %)."""
    import cv2
    import numpy as np

    h, w = shape
    rng = np.random.default_rng(seed)
    lo, hi = (0.03, 0.10) if kind == "object" else (0.20, 0.30)
    target = rng.uniform(lo, hi)
    s = min(h, w)
    mask = np.zeros((h, w), np.uint8)
    while mask.mean() < target:
        if kind == "object" and mask.mean() > 0 and rng.random() < 0.5 or (kind == "large" and rng.random() < 0.4):
            pts = rng.integers([0, 0], [w, h], (4, 2)).astype(np.int32)
            cv2.polylines(mask, [pts], False, 1, thickness=int(s * rng.uniform(0.02, 0.05)))
        else:
            cy, cx = rng.integers(s // 6, [h - s // 6, w - s // 6])
            axes = (int(s * rng.uniform(0.06, 0.14)), int(s * rng.uniform(0.06, 0.14)))
            cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if mask.mean() > hi:
            mask[:] = 0
    return mask.astype(bool)


def texture_ratio(out, real, hole) -> float:
    import cv2
    import numpy as np

    def lap(img):
        return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[hole].var()

    return float(lap(out) / max(lap(real), 1e-6))


def psnr_box(out, real, hole, grow: int = 16) -> float:
    import numpy as np

    ys, xs = np.nonzero(hole)
    y0, y1 = max(ys.min() - grow, 0), ys.max() + grow + 1
    x0, x1 = max(xs.min() - grow, 0), xs.max() + grow + 1
    err = (out[y0:y1, x0:x1].astype(np.float64) - real[y0:y1, x0:x1]) ** 2
    return float(10 * np.log10(255.0**2 / max(err.mean(), 1e-10)))


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
        simd = ",".join(f for f in ("avx2", "avx512f", "fma") if f" {f}" in flags)
    except (OSError, StopIteration):
        simd = "?"
    load = os.getloadavg()
    return (f"{cpu} ({simd}), {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"python {platform.python_version()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", nargs="+", required=True, help="photo files or folders of .jpg/.png")
    ap.add_argument("--sizes", default="2048,native")
    ap.add_argument("--masks", default="object")
    ap.add_argument("--backends", default="numba")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it is reported as DNF")
    ap.add_argument("--out", type=Path, default=None, help="append a markdown table here")
    a = ap.parse_args()
    photos: list[str] = []
    for p in a.photos:
        pp = Path(p)
        photos += sorted(str(f) for f in pp.iterdir() if f.suffix.lower() in (".jpg", ".png")) if pp.is_dir() else [p]
    print(f"machine: {machine()}", flush=True)
    # compile (or load) the serial and parallel numba kernels once, timed, so every run reads the cache
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import numpy as np;"
                    "from imgsynth.models.patchmatch import patchmatch_inpaint as f;"
                    "m=np.zeros((32,32),bool); m[10:20,10:20]=True; f(np.zeros((32,32,3),np.uint8), m);"
                    "m=np.zeros((400,400),bool); m[50:350,50:350]=True; f(np.zeros((400,400,3),np.uint8), m)",
                    str(ROOT)],
                   check=True)
    print(f"kernels ready (compile or cache load + import) in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for photo in photos:
        for size in a.sizes.split(","):
            for mask in a.masks.split(","):
                for backend in a.backends.split(","):
                    args = {"photo": photo, "size": size, "mask": mask, "seed": a.seed, "backend": backend}
                    load = os.getloadavg()[0]
                    try:
                        proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps(args)],
                                              capture_output=True, text=True, timeout=a.timeout)
                    except subprocess.TimeoutExpired:
                        rec = {**args, "error": f"did not finish in {a.timeout:.0f} s"}
                    else:
                        sys.stderr.write(proc.stderr)
                        if proc.returncode:
                            rec = {**args, "error": proc.stderr.strip().splitlines()[-1]}
                        else:
                            rec = {**args, **json.loads(proc.stdout.strip().splitlines()[-1])}
                    rec["load1"] = load
                    rows.append(rec)
                    print(json.dumps(rec), flush=True)
    if a.out is not None:
        lines = [f"\nMachine: {machine()} (at the end of the run).\n",
                 "| photo | size | mask | hole % | backend | PatchMatch s (CPU s) | Telea s | peak RSS MB | "
                 "texture PM / Telea | PSNR box PM / Telea | load 1 min |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            name = Path(r["photo"]).stem
            if "error" in r:
                lines.append(f"| {name} | {r['size']} | {r['mask']} | | {r['backend']} | {r['error']} | | | | | "
                             f"{r['load1']:.2f} |")
                continue
            lines.append(
                f"| {name} | {r['w']}x{r['h']} | {r['mask']} | {100 * r['hole']:.1f} | {r['backend']} | "
                f"{r['seconds']:.1f} ({r['cpu_seconds']:.1f}) | {r['telea_seconds']:.2f} | {r['peak_rss_mb']:.0f} | "
                f"{r['texture']:.2f} / {r['texture_telea']:.2f} | {r['psnr']:.1f} / {r['psnr_telea']:.1f} | "
                f"{r['load1']:.2f} |")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with a.out.open("a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
