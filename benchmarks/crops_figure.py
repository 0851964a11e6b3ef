"""100 % crops of the same regions from several images of one size, side by side, labelled.

    python benchmarks/crops_figure.py -o benchmarks/results/inpaint_forest.jpg \\
        --crop 250:1150,908:1358 --crop 1130:1530,1475:1925 \\
        original=examples/inpaint/forest.jpg default=default.png patchmatch=patchmatch.png

Every ``LABEL=PATH`` image is a column (in the order given); every ``--crop Y0:Y1,X0:X1`` (pixels,
ends exclusive) a row, taken at full resolution (no scaling), so what the figure shows is what a
viewer sees at 100 % zoom. The crops of one row must have the same width.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

GAP = 6
HEADER = 28


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``Y0:Y1,X0:X1`` -> (y0, y1, x0, x1)."""
    try:
        rows, cols = text.split(",")
        y0, y1 = (int(v) for v in rows.split(":"))
        x0, x1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop {text!r}: expected Y0:Y1,X0:X1, e.g. 250:1150,908:1358") from None
    if not (0 <= y0 < y1 and 0 <= x0 < x1):
        raise argparse.ArgumentTypeError(f"crop {text!r}: needs 0 <= Y0 < Y1 and 0 <= X0 < X1")
    return y0, y1, x0, x1


def crops_figure(images: list[tuple[str, np.ndarray]], crops: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The figure (BGR uint8): a header of labels, then one row per crop, one column per image."""
    shape = images[0][1].shape[:2]
    for label, img in images:
        if img.shape[:2] != shape:
            raise ValueError(f"{label}: {img.shape[1]}x{img.shape[0]}, not {shape[1]}x{shape[0]} like the first image")
    for y0, y1, x0, x1 in crops:
        if y1 > shape[0] or x1 > shape[1]:
            raise ValueError(f"crop {y0}:{y1},{x0}:{x1} lies outside the {shape[1]}x{shape[0]} images")
    widths = {x1 - x0 for _, _, x0, x1 in crops}
    if len(widths) != 1:
        raise ValueError(f"every crop needs the same width, got {sorted(widths)}")
    width = widths.pop()
    columns = []
    for label, img in images:
        parts = [np.full((HEADER, width, 3), 255, np.uint8)]
        cv2.putText(parts[0], label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        for y0, y1, x0, x1 in crops:
            parts += [img[y0:y1, x0:x1], np.full((GAP, width, 3), 255, np.uint8)]
        columns += [np.concatenate(parts[:-1]), None]
    height = columns[0].shape[0]
    gap = np.full((height, GAP, 3), 255, np.uint8)
    return np.concatenate([c if c is not None else gap for c in columns[:-1]], 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", metavar="LABEL=PATH")
    ap.add_argument("--crop", type=parse_crop, action="append", required=True, metavar="Y0:Y1,X0:X1")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    images = []
    for item in args.images:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            ap.error(f"{item!r}: expected LABEL=PATH")
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            ap.error(f"{path}: not a readable image")
        images.append((label, img))
    try:
        figure = crops_figure(images, args.crop)
    except ValueError as exc:
        ap.error(str(exc))
    params = [cv2.IMWRITE_JPEG_QUALITY, 88] if args.out.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(args.out), figure, params):
        ap.error(f"{args.out}: could not be written")
    print(f"{args.out}: {figure.shape[1]}x{figure.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
