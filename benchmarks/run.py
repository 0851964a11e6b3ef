#!/usr/bin/env python
"""Command benchmarks: CLI start-up and each job's wall time, images/s and peak memory, as JSON.

    python benchmarks/run.py [--repeat 3] [--only help,models-list,rerun,telea35] [--out FILE]

Every measurement runs the real CLI (this checkout's code) in a fresh process, so interpreter
start-up and import costs count, and peak memory is that process's max RSS from ``wait4``. The first
line printed is the machine line (CPU model, SIMD flags, cores, load average, threads) that every
figure must be quoted with. Commands whose model is not available here are reported as skipped.

``telea35`` compares ``imgsynth inpaint`` over 35 photos of 512x512 with a plain Python loop of
``cv2.imread`` / ``cv2.inpaint`` / ``cv2.imwrite`` over the same files, each in a fresh process,
alternating, in the same run; the ratio is what the README quotes.
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


ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

CV2_LOOP = """
import sys, glob, os, cv2
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for p in sorted(glob.glob(os.path.join(src, "*.png"))):
    if p.endswith("_mask.png"):
        continue
    img = cv2.imread(p)
    mask = cv2.imread(p[:-4] + "_mask.png", cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(os.path.join(dst, os.path.basename(p)), cv2.inpaint(img, (mask >= 128).astype("uint8"), 3, cv2.INPAINT_TELEA))
"""


def machine_line() -> str:
    """CPU model, SIMD flags, cores, load average and thread settings, on one line."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve") if f in flags]
    load = "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {model}; {'+'.join(simd) or 'no AVX2'}; {os.cpu_count()} cpus; load {load}; "
            f"python {platform.python_version()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE (imgsynth default)')}")


def run_cli(args: list[str], cwd: Path, python_args: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    cmd = [sys.executable, *(python_args or ["-m", "imgsynth"]), *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "exit": code, "stderr": err.strip()[-300:]}


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
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {"name": name, "args": args, "images": n_images, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
            "images_per_s": round(n_images / wall, 3) if n_images else None,
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1), "repeat": repeat}


def _photos_512(folder: Path, n: int) -> None:
    """``n`` photos of 512x512 with their masks (the bundled astronaut, resized, shifted per copy)."""
    import numpy as np
    from PIL import Image

    ex = ROOT / "examples" / "inpaint"
    base = np.asarray(Image.open(ex / "astronaut.png").convert("RGB").resize((512, 512)))
    hole = np.asarray(Image.open(ex / "astronaut_mask.png").convert("L").resize((512, 512), Image.NEAREST))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.roll(base, 7 * i, axis=1)).save(folder / f"p{i:03d}.png")
        Image.fromarray(hole).save(folder / f"p{i:03d}_mask.png")


def telea_vs_cv2(work: Path, repeat: int) -> dict:
    """``imgsynth inpaint --model telea`` over 35 photos of 512² against a plain cv2 loop, alternating."""
    photos, out_cli, out_cv2 = work / "p512", work / "out-cli", work / "out-cv2"
    _photos_512(photos, 35)
    cli, plain = [], []
    for _ in range(repeat):
        shutil.rmtree(out_cli, ignore_errors=True), shutil.rmtree(out_cv2, ignore_errors=True)
        r = run_cli(["inpaint", str(photos), "-o", str(out_cli), "--model", "telea", "-q"], work)
        if r["exit"] != 0:
            return {"name": "inpaint telea 35x512 vs cv2 loop", "skipped": True, "reason": r["stderr"]}
        q = run_cli([str(photos), str(out_cv2)], work, ["-c", CV2_LOOP])
        cli.append((r["wall_s"], r["cpu_s"]))
        plain.append((q["wall_s"], q["cpu_s"]))
    c, p = statistics.median(w for w, _ in cli), statistics.median(w for w, _ in plain)
    cc, pc = statistics.median(u for _, u in cli), statistics.median(u for _, u in plain)
    return {"name": "inpaint telea 35x512 vs cv2 loop", "images": 35, "wall_s": round(c, 4), "cpu_s": round(cc, 4),
            "cv2_loop_wall_s": round(p, 4), "cv2_loop_cpu_s": round(pc, 4), "ratio": round(c / p, 3),
            "cpu_ratio": round(cc / pc, 3), "repeat": repeat}


def measure_python(work: Path, repeat: int) -> dict:
    """``python -c pass``: interpreter start-up alone, the baseline of every command figure."""
    runs = [run_cli([], work, ["-c", "pass"]) for _ in range(repeat)]
    return {"name": "python -c pass (baseline)", "images": 0, "repeat": repeat,
            "wall_s": round(statistics.median(r["wall_s"] for r in runs), 4),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 4),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1)}


def rerun(work: Path, repeat: int) -> dict:
    """``sample --num 64`` into a folder where all 64 exist: the skip path, start-up included."""
    out = work / "finished"
    first = run_cli(["sample", "--num", "64", "-o", str(out)], work)
    if first["exit"] != 0:
        return {"name": "sample rerun, 64 finished", "skipped": True, "reason": first["stderr"]}
    res = measure("sample rerun, 64 finished", ["sample", "--num", "64", "-o", str(out)], 0, repeat, work)
    return res


ALL = ("python-start", "help", "models-list", "rerun", "telea1", "telea-batch", "patchmatch1", "default-batch", "sample64",
       "interpolate", "telea35")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16, help="images per batch benchmark")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma list of: {', '.join(ALL)}")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    only = set(a.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}")
    machine = machine_line()
    print(machine, flush=True)
    work = Path(tempfile.mkdtemp(prefix="imgsynth-bench-"))
    ex = ROOT / "examples" / "inpaint"
    photos = work / "photos"
    photos.mkdir()
    for i in range(a.batch):
        shutil.copy(ex / "astronaut.png", photos / f"p{i:03d}.png")
        shutil.copy(ex / "astronaut_mask.png", photos / f"p{i:03d}_mask.png")
    out = work / "out"
    reset = lambda: shutil.rmtree(out, ignore_errors=True)  # noqa: E731
    jobs = {
        # the bare interpreter in the same run: the floor every command figure sits on
        "python-start": lambda: measure_python(work, max(5, a.repeat)),
        "help": lambda: measure("help", ["--help"], 0, max(5, a.repeat), work),
        "models-list": lambda: measure("models list", ["models", "list"], 0, max(5, a.repeat), work),
        "rerun": lambda: rerun(work, max(5, a.repeat)),
        "telea1": lambda: measure("inpaint telea x1", ["inpaint", str(ex / "astronaut.png"), "--mask",
                                                       str(ex / "astronaut_mask.png"), "-o", str(work / "one.png"),
                                                       "--model", "telea"], 1, a.repeat, work),
        "telea-batch": lambda: measure(f"inpaint telea x{a.batch}", ["inpaint", str(photos), "-o", str(out),
                                                                     "--model", "telea"], a.batch, a.repeat, work, reset),
        "patchmatch1": lambda: measure("inpaint patchmatch x1", ["inpaint", str(ex / "astronaut.png"), "--mask",
                                                                 str(ex / "astronaut_mask.png"), "-o",
                                                                 str(work / "pm.png"), "--model", "patchmatch"],
                                       1, a.repeat, work),
        "default-batch": lambda: measure(f"inpaint default x{a.batch}", ["inpaint", str(photos), "-o", str(out)],
                                         a.batch, a.repeat, work, reset),
        "sample64": lambda: measure("sample default 64", ["sample", "--num", "64", "-o", str(out)], 64, a.repeat,
                                    work, reset),
        "interpolate": lambda: measure("interpolate default 60 frames", ["interpolate", "--seeds", "1,2,3", "--steps",
                                                                        "30", "-o", str(work / "walk.gif")],
                                       61, a.repeat, work),
        "telea35": lambda: telea_vs_cv2(work, a.repeat),
    }
    results = []
    for key in ALL:
        if key in only:
            results.append(jobs[key]())
            r = results[-1]
            extra = (f"  (cv2 loop {r['cv2_loop_wall_s']} s wall, {r['cv2_loop_cpu_s']} s cpu; ratio {r['ratio']} wall, "
                     f"{r['cpu_ratio']} cpu)" if "ratio" in r else "")
            done = f"{r.get('wall_s')} s wall, {r.get('cpu_s')} s cpu{extra}"
            print(f"{r['name']}: " + (f"skipped ({r['reason']})" if r.get("skipped") else done),
                  file=sys.stderr, flush=True)
    report = {
        "machine": {"line": machine, "python": platform.python_version(), "platform": platform.platform(),
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
