#!/usr/bin/env python
"""Same-process A/B of two imgsynth checkouts on one released config: same weights, same inputs.

    python benchmarks/ab_speed.py --base /path/to/other/checkout MODEL [--rounds 9] [--threads 2]

A is the ``imgsynth`` package of ``--base`` (for example a worktree of ``main``), B is this
checkout's. The network is built once with this checkout's code (``build_and_inputs`` of
``conformance_speed.py``), copied, and every module of the copy gets the class of the same name
from A's package (loaded under another top-level name), so both run the same weights. The
forwards alternate A, B, A, B, ... (fp32, inference mode). The script prints each round's ratio
A time / B time, their median, the relative difference of the outputs and the load average.
Comparing two processes run one after the other would mix in the load changes between them.
A module class that A does not have makes the script stop with an error.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch is imported
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BASE_NAME = "imgsynth_ab_base"


def import_base(checkout: Path, into: Path, name: str = BASE_NAME) -> Any:
    """Copy ``checkout/imgsynth`` to ``into/name`` with its absolute imports renamed, and import it."""
    dst = into / name
    shutil.copytree(checkout / "imgsynth", dst, ignore=shutil.ignore_patterns("__pycache__"))
    pattern = re.compile(r"\b(from|import) imgsynth(?=[. \n])")
    for py in dst.rglob("*.py"):
        text = py.read_text()
        py.write_text(pattern.sub(rf"\1 {name}", text).replace('"imgsynth.', f'"{name}.'))
    if str(into) not in sys.path:
        sys.path.insert(0, str(into))
    return importlib.import_module(name)


def as_base(model: Any, name: str = BASE_NAME) -> Any:
    """A deep copy of ``model`` whose imgsynth modules have the base package's classes."""
    other = copy.deepcopy(model)
    for m in other.modules():
        for k in [k for k in m.__dict__ if k.startswith("_weight_cache") or k == "_bn_folded"]:
            del m.__dict__[k]  # caches built by B's code
        mod = type(m).__module__
        if mod.startswith("imgsynth."):
            m.__class__ = getattr(importlib.import_module(f"{name}.{mod[len('imgsynth.'):]}"), type(m).__name__)
    return other


def ab(a_fn, b_fn, rounds: int) -> dict[str, Any]:
    """Alternate A and B ``rounds`` times after one warm-up each; per-round ratios A / B."""
    import torch

    with torch.inference_mode():
        ya, yb = a_fn(), b_fn()
        ya = ya[0] if isinstance(ya, tuple) else ya
        yb = yb[0] if isinstance(yb, tuple) else yb
        err = ((ya - yb).abs().max() / ya.abs().max().clamp_min(1e-30)).item()
        ta, tb = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            a_fn()
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            b_fn()
            tb.append(time.perf_counter() - t)
    ratios = [x / y for x, y in zip(ta, tb)]
    return {"a_s": statistics.median(ta), "b_s": statistics.median(tb), "ratio": statistics.median(ratios),
            "ratios": [round(r, 3) for r in ratios], "rel_err": err}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="conformance manifest name, e.g. pix2pix_unet256_facades")
    ap.add_argument("--base", type=Path, required=True, help="checkout whose imgsynth package is A")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    from benchmarks.conformance_speed import build_and_inputs, machine_info, machine_line

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        import_base(a.base, Path(tmp))
        new, inputs = build_and_inputs(a.model)
        old = as_base(new)
        load = os.getloadavg()[0]
        r = ab(lambda: old(*inputs), lambda: new(*inputs), a.rounds)
    print(f"Machine: {machine_line(machine_info())}")
    print(f"{a.model}: A {r['a_s'] * 1e3:.1f} ms, B {r['b_s'] * 1e3:.1f} ms, median per-round A/B {r['ratio']:.3f}x "
          f"(rounds {r['ratios']}), outputs differ by {r['rel_err']:.1e} of max |A|, "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
