#!/usr/bin/env python
"""onnxruntime vs torch on released configs, timed interleaved in the same process (fp32, batch 1).

    python benchmarks/onnx_speed.py [--models dcgan_examples,pix2pix_unet256_facades] [--rounds 3]

Each model is exported once (``imgsynth.engine.onnx.OrtGenerator``, the ``--runtime onnx`` path;
the export itself is not timed), then torch and onnxruntime forwards alternate; the table gives
both medians, their ratio and the largest output difference, with the machine line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from imgsynth.engine.device import prepare_runtime  # noqa: E402

prepare_runtime()  # as the CLI does, before torch is imported


def main() -> int:
    import torch

    from benchmarks.conformance_speed import build_and_inputs, machine_info, machine_line
    from imgsynth.engine.onnx import OrtGenerator, timed_compare

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="dcgan_examples,pix2pix_unet256_facades,pconv_unet_places2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    os.environ.setdefault("IMGSYNTH_CACHE", tempfile.mkdtemp())
    info = machine_info()
    rows = []
    for name in a.models.split(","):
        model, inputs = build_and_inputs(name)
        ort_model = OrtGenerator(model, threads=torch.get_num_threads())
        with torch.inference_mode():
            ref, got = model(*inputs), ort_model(*inputs)
            ref, got = (ref[0], got[0]) if isinstance(ref, tuple) else (ref, got)
            t = timed_compare(lambda: model(*inputs), lambda: ort_model(*inputs), a.rounds)
        row = {"model": name, **t, "onnx_over_torch": t["onnx_s"] / t["torch_s"],
               "max_abs_diff": float((got - ref).abs().max())}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    info["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"Machine: {machine_line(info)}\n")
    print("| model | torch s | onnxruntime s | onnxruntime / torch | max abs diff |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['torch_s']:.4g} | {r['onnx_s']:.4g} | {r['onnx_over_torch']:.2f} | "
              f"{r['max_abs_diff']:.1e} |")
    if a.out:
        a.out.write_text(json.dumps({"machine_line": machine_line(info), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
