#!/usr/bin/env python
"""Lay out the real training photographs of the PConv recipes: DEST/{train,val,eval,tiles}.

    python examples/train/get_photos.py /work/data/pconv-photos [--keep-downloads DIR]

  train: every photo that ../shared/data/TRAINING-DATA.md whitelists (Debian wallpaper packages,
         opencv-doc samples, the scikit-image and PyWavelets images), minus the validation ones, plus
         the photographs and textures of other packages checked the same way (examples/train/README.md,
         "Training data"): lomiri-wallpapers-20.04 (one photo), mypaint-data-extras (17 scanned
         paper/canvas textures), xplanet-images (NASA Blue Marble)
  val:   three whitelisted photos no bundled network was trained on (choosing checkpoints)
  eval:  photos from the whitelisted packages that are NOT on the whitelist (never trained on):
         the held-out set of benchmarks/inpaint_bins.py, as examples/inpaint/train/get_photos.sh
  tiles: 256x256 tiles of train at three scales (the short side resized to 256, 384 and 576 where
         the photo is that large, one tile every 192 px), what `data.path` of the recipes names

Debian packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` (nothing is
installed; run `apt-get update` once first); the two wheels with `pip download --no-deps`, and only
their image files are read. Needs Pillow and NumPy. Re-running overwrites DEST's files.
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

DEBS = ["mate-backgrounds", "lomiri-wallpapers-16.04", "plasma-workspace-wallpapers", "opencv-doc",
        "lomiri-wallpapers-20.04", "mypaint-data-extras", "xplanet-images"]
WHEELS = ["scikit-image==0.26.0", "PyWavelets==1.9.0"]

MATE = ["Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "RainDrops", "TwoWings"]
LOMIRI = ["Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
          "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich", "sunset_by_Aitzol_Berasategi"]
PLASMA = ["ColdRipple", "DarkestHour", "Grey", "Kite", "OneStandsOut", "summer_1am", "Volna"]
OPENCV = ["aero1", "aero3", "apple", "orange", "board", "home", "ela_original", "box_in_scene",
          "rubberwhale1", "smarties", "messi5", "licenseplate_motion", "stuff"]
SKIMAGE = ["hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "moon.png", "coins.png",
           "page.png", "text.png", "brick.png", "grass.png", "gravel.png"]
PYWT = ["aero", "ascent"]  # pywt's camera is skimage's camera pixel for pixel
VAL = ["mate_Garden.jpg", "lomiri_Dragonfly_by_Bolly.jpg", "opencv_home.jpg"]
# not on the whitelist: held out for evaluation (the same list as examples/inpaint/train/get_photos.sh)
EVAL_MATE = ["LadyBird", "Storm", "Wood", "YellowFlower", "Aqua"]
EVAL_LOMIRI = ["Wine_by_Jakkub_Mede", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
               "Picture_1A_by_freespace"]
EVAL_PLASMA = ["Altai", "Autumn", "BytheWater", "Canopee", "Cascade", "EveningGlow", "FallenLeaf",
               "IceCold", "Path"]
EVAL_OPENCV = ["baboon", "building", "butterfly", "fruits", "HappyFish", "leuvenA", "graf1"]
# other packages, checked file by file (README "Training data"); everything else in them was refused
EXTRA_LOMIRI = ["Kleiber_by_Lukas_Baubkus"]
MYPAINT = ["mrmamurk/mamurk_a_1", "mrmamurk/mamurk_a_2", "mrmamurk/mamurk_b_1", "mrmamurk/mamurk_c_3",
           "mrmamurk/mamurk_e_1", "mrmamurk/mamurk_e_2", "mrmamurk/mamurk_f_1", "ramon/HR_Canvas 01",
           "ramon/HR_Canvas 02", "ramon/HR_Cork", "ramon/HR_DecoPaper", "ramon/HR_PastelPaper 01",
           "ramon/HR_PastelPaper 02", "ramon/HR_RoughPaper", "ramon/HR_SketchPaper",
           "ramon/HR_SketchPaper 02", "ramon/HR_WaterColor"]


def fetch(work: Path) -> tuple[Path, Path]:
    """Download and unpack the packages into work/x (Debian) and work/wheels; return both."""
    debs, x, wheels = work / "debs", work / "x", work / "wheels"
    for d in (debs, x, wheels):
        d.mkdir(parents=True, exist_ok=True)
    missing = [p for p in DEBS if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True, stdout=subprocess.DEVNULL)
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(x)], check=True)
    if len(list(wheels.glob("*.whl"))) < len(WHEELS):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *WHEELS],
                       check=True)
    return x / "usr" / "share", wheels


def largest(folder: Path) -> Path:
    """The largest file of a plasma wallpaper's contents/images (its native resolution)."""
    return max((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)


def save_rgb_or_gray(im: Image.Image, dest: Path) -> None:
    """Write as PNG (lossless), RGB or L as the source is."""
    im = im.convert("L") if im.mode in ("L", "P", "1") and not _has_colour(im) else im.convert("RGB")
    tmp = dest.with_suffix(".part.png")
    im.save(tmp)
    tmp.replace(dest)


def _has_colour(im: Image.Image) -> bool:
    a = np.asarray(im.convert("RGB"), dtype=np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() > 2 or np.abs(a[..., 1] - a[..., 2]).max() > 2)


def lay_out(share: Path, wheels: Path, dest: Path) -> dict[str, list[str]]:
    """Copy every photo into dest/{train,val,eval}; returns the file names per folder."""
    for sub in ("train", "val", "eval"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    got: dict[str, list[str]] = {"train": [], "val": [], "eval": []}

    def copy(src: Path, split: str, name: str) -> None:
        if not src.is_file():
            raise SystemExit(f"error: {src}: missing from its package")
        if split == "train" and name in VAL:
            split = "val"
        shutil.copyfile(src, dest / split / name)
        got[split].append(name)

    data = share / "doc" / "opencv-doc" / "examples" / "data"

    def opencv(n: str) -> Path:
        hits = sorted(data.glob(f"{n}.*"))
        if not hits:
            raise SystemExit(f"error: {data}/{n}.*: missing from opencv-doc")
        return hits[0]

    def wallpapers(split: str, mate: list[str], lomiri: list[str], plasma: list[str], samples: list[str]) -> None:
        for n in mate:
            copy(share / "backgrounds" / "mate" / "nature" / f"{n}.jpg", split, f"mate_{n}.jpg")
        for n in lomiri:
            copy(share / "backgrounds" / f"{n}.jpg", split, f"lomiri_{n}.jpg")
        for n in plasma:
            copy(largest(share / "wallpapers" / n / "contents" / "images"), split, f"plasma_{n}.jpg")
        for n in samples:
            src = opencv(n)
            copy(src, split, f"opencv_{src.name}")

    wallpapers("train", MATE, LOMIRI, PLASMA, OPENCV)
    copy(next(share.glob("doc/opencv-doc/**/alphamat/input_images/plant.jpg")), "train", "opencv_plant.jpg")
    copy(next(share.glob("doc/opencv-doc/**/hfs/data/000.jpg")), "train", "opencv_hfs_000.jpg")
    for n in EXTRA_LOMIRI:
        copy(share / "backgrounds" / f"{n}.jpg", "train", f"lomiri2004_{n}.jpg")
    for n in MYPAINT:
        src = share / "mypaint" / "backgrounds" / f"{n}.png"
        name = "mypaint_" + n.split("/")[1].replace(" ", "_") + ".png"
        save_rgb_or_gray(Image.open(src), dest / "train" / name)
        got["train"].append(name)
    copy(share / "xplanet" / "images" / "earth.jpg", "train", "xplanet_earth.jpg")

    skimage = zipfile.ZipFile(next(wheels.glob("scikit_image-*.whl")))
    for n in SKIMAGE:
        name = "skimage_" + n.rsplit(".", 1)[0] + ".png"
        save_rgb_or_gray(Image.open(io.BytesIO(skimage.read(f"skimage/data/{n}"))), dest / "train" / name)
        got["train"].append(name)
    pywt = zipfile.ZipFile(next(wheels.glob("[Pp]y[Ww]avelets-*.whl")))
    for n in PYWT:
        arr = np.load(io.BytesIO(pywt.read(f"pywt/data/{n}.npz")))["data"]
        save_rgb_or_gray(Image.fromarray(arr.astype(np.uint8)), dest / "train" / f"pywt_{n}.png")
        got["train"].append(f"pywt_{n}.png")

    wallpapers("eval", EVAL_MATE, EVAL_LOMIRI, EVAL_PLASMA, EVAL_OPENCV)
    return got


def starts(n: int, tile: int = 256, stride: int = 192) -> list[int]:
    steps = math.ceil((n - tile) / stride)
    return [round(i * (n - tile) / max(1, steps)) for i in range(steps + 1)]


def make_tiles(src: Path, dst: Path) -> int:
    """256x256 RGB tiles of every photo in src at three scales (the README's snippet)."""
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    for p in sorted(src.iterdir()):
        im = Image.open(p).convert("RGB")
        for s in (256, 384, 576):
            if s > 256 and s > min(im.size):
                continue
            k = s / min(im.size)
            r = im.resize((round(im.width * k), round(im.height * k)), Image.LANCZOS)
            for x in starts(r.width):
                for y in starts(r.height):
                    r.crop((x, y, x + 256, y + 256)).save(dst / f"{p.stem}_s{s}_{x}_{y}.png")
                    count += 1
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", type=Path, nargs="?", default=Path("data/photos-plus"))
    ap.add_argument("--keep-downloads", type=Path, default=None,
                    help="folder for the .deb/.whl files and their unpacked trees (default: a temporary one)")
    args = ap.parse_args()
    if args.dest.exists() and any((args.dest / "tiles").glob("*.png")):
        shutil.rmtree(args.dest / "tiles")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep_downloads or Path(tmp)
        share, wheels = fetch(work)
        got = lay_out(share, wheels, args.dest)
    tiles = make_tiles(args.dest / "train", args.dest / "tiles")
    print(f"train: {len(got['train'])}  val: {len(got['val'])}  eval: {len(got['eval'])}  "
          f"tiles: {tiles}  in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
