#!/usr/bin/env python
"""Command benchmarks: CLI start-up and each job's wall time, images/s and peak memory, as JSON.

    python benchmarks/run.py [--repeat 3] [--out benchmarks/results/latest.json]

Every measurement runs the real CLI in a fresh process (so import costs count), and peak memory is
that process's max RSS from ``wait4``. Commands whose model is not available here are reported as
skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], cwd: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "imgsynth", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "exit": code, "stderr": err.strip()[-300:]}


def measure(name: str, args: list[str], n_images: int, repeat: int, work: Path, reset=None) -> dict:
    runs = []
    for _ in range(repeat):
        if reset:
            reset()
        r = run_cli(args, work)
        if r["exit"] != 0:
            return {"name": name, "skipped": True, "reason": r["stderr"], "args": args}
        runs.append(r)
    wall = statistics.median(r["wall_s"] for r in runs)
    return {"name": name, "args": args, "images": n_images, "wall_s": round(wall, 4),
            "images_per_s": round(n_images / wall, 3) if n_images else None,
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1), "repeat": repeat}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16, help="images per batch benchmark")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgsynth-bench-"))
    ex = ROOT / "examples" / "inpaint"
    photos = work / "photos"
    photos.mkdir()
    for i in range(a.batch):
        shutil.copy(ex / "astronaut.png", photos / f"p{i:03d}.png")
        shutil.copy(ex / "astronaut_mask.png", photos / f"p{i:03d}_mask.png")
    out = work / "out"
    reset = lambda: shutil.rmtree(out, ignore_errors=True)  # noqa: E731
    results = [
        measure("help", ["--help"], 0, max(5, a.repeat), work),
        measure("models list", ["models", "list"], 0, max(5, a.repeat), work),
        measure("inpaint telea x1", ["inpaint", str(ex / "astronaut.png"), "--mask", str(ex / "astronaut_mask.png"),
                                     "-o", str(work / "one.png"), "--model", "telea"], 1, a.repeat, work),
        measure(f"inpaint telea x{a.batch}", ["inpaint", str(photos), "-o", str(out), "--model", "telea"],
                a.batch, a.repeat, work, reset),
        measure("inpaint patchmatch x1", ["inpaint", str(ex / "astronaut.png"), "--mask", str(ex / "astronaut_mask.png"),
                                          "-o", str(work / "pm.png"), "--model", "patchmatch"], 1, a.repeat, work),
        measure(f"inpaint default x{a.batch}", ["inpaint", str(photos), "-o", str(out)], a.batch, a.repeat, work, reset),
        measure("sample default 64", ["sample", "--num", "64", "-o", str(out)], 64, a.repeat, work, reset),
        measure("interpolate default 60 frames", ["interpolate", "--seeds", "1,2,3", "--steps", "30",
                                                  "-o", str(work / "walk.gif")], 61, a.repeat, work),
    ]
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "processor": platform.processor()},
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
