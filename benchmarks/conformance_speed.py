#!/usr/bin/env python
"""CPU forward time of every released config vs the official implementation, fp32 and bf16.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/conformance_speed.py [--models spade_ade20k,...] [--repeat 3]

For each model with a ``full`` section in ``../shared/conformance/data/<model>.manifest.json``, the
released config is read off the official key/shape list by our converters' ``infer_config`` (the
path a user's real checkpoint takes), the network is built, and one batch-1 forward on inputs of the
recorded shapes is timed (median of ``--repeat`` after a warm-up, 2 threads, inference mode) in
fp32 and in bf16. The official time is the manifest's ``full.measure_omp_passive`` (same machine
kind, same thread count, passive OpenMP waiting); speed-up = official / ours. Each model runs in a
fresh process so one model's memory and thread pools do not affect the next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "conformance" / "data"

CHILD = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[3])
torch.set_num_threads(2)
from benchmarks.conformance_speed import build_and_inputs
name, repeat = sys.argv[1], int(sys.argv[2])
model, inputs = build_and_inputs(name)
out = {}
for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    m = model.to(dtype)
    xs = [x.to(dtype) if x.is_floating_point() else x for x in inputs]
    with torch.inference_mode():
        m(*xs)
        ts = []
        for _ in range(repeat):
            t = time.perf_counter(); m(*xs); ts.append(time.perf_counter() - t)
    ts.sort()
    out[prec] = ts[len(ts) // 2]
print(json.dumps(out))
"""


def _shapes(manifest: dict, real: bool = False) -> dict:
    """The official key -> tensor layout: meta tensors, or all-ones ones where a converter reads values."""
    import torch

    sd = {}
    for key, spec in manifest["full"]["state_dict"].items():
        shape, dtype = (spec["shape"], spec.get("dtype", "float32")) if isinstance(spec, dict) else (spec, "float32")
        dt = getattr(torch, str(dtype).replace("torch.", ""))
        sd[key] = torch.ones(shape, dtype=dt) if real else torch.empty(shape, dtype=dt, device="meta")
    return sd


def build_and_inputs(name: str):
    """(network in eval mode with random weights, forward inputs) for the released config of ``name``."""
    import torch

    from imgsynth.convert import dcgan, pconv, pix2pix, pix2pixhd, progan, spade, stylegan2_pkl
    from imgsynth.models.registry import build_model

    man = json.loads((DATA / f"{name}.manifest.json").read_text())
    sd = _shapes(man, real=name.startswith("pconv_unet"))
    shapes = man["full"]["input_shapes"]
    if name.startswith("spade_"):
        arch, cfg = "spade", spade.infer_config(sd, dataset=name.split("_", 1)[1])
    elif name.startswith("pix2pixhd_"):
        arch = pix2pixhd.infer_arch(sd)
        cfg = pix2pixhd.infer_config(sd)
    elif name.startswith(("pix2pix_", "cyclegan_")):
        arch, cfg = pix2pix.infer_arch(sd), pix2pix.infer_config(sd)
    elif name == "dcgan_examples":
        arch, cfg = "dcgan", dcgan.infer_config(sd)
    elif name.startswith("dcgan_ganzoo"):
        arch, cfg = "dcgan", dcgan.infer_config({"netG": sd})
    elif name.startswith("pgan_"):
        arch, cfg = "progan", progan.infer_config({"netG": sd})
    elif name.startswith("stylegan2ada_"):
        arch, cfg = "stylegan2", stylegan2_pkl.infer_config(sd)
    elif name.startswith("pconv_unet"):
        arch, cfg = "pconv_unet", {**pconv.infer_config({"model": sd}), "renorm": "naoto"}
    else:
        raise KeyError(name)
    torch.manual_seed(0)
    model = build_model(arch, cfg).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = []
    for i, shape in enumerate(shapes):
        if name.startswith(("spade_", "pix2pixhd_")):
            lab = torch.randint(0, shape[1], (shape[0], shape[2] // 8, shape[3] // 8), generator=gen)
            lab = lab.repeat_interleave(8, 1).repeat_interleave(8, 2)
            inputs.append(torch.nn.functional.one_hot(lab, shape[1]).permute(0, 3, 1, 2).float())
        elif name.startswith("pconv_unet") and i == 1:
            hole = torch.rand(shape[0], 1, shape[2] // 16, shape[3] // 16, generator=gen) < 0.3
            inputs.append((~hole).float().repeat_interleave(16, 2).repeat_interleave(16, 3).expand(shape).contiguous())
        else:
            inputs.append(torch.randn(*shape, generator=gen))
    if name.startswith("pconv_unet"):
        inputs[0] = inputs[0] * inputs[1]
    return model, inputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma list (default: every manifest with a full section)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    names = a.models.split(",") if a.models else sorted(
        p.name[: -len(".manifest.json")] for p in DATA.glob("*.manifest.json")
        if "full" in json.loads(p.read_text()) and p.name != "manifest.json")
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    rows = []
    for name in names:
        man = json.loads((DATA / f"{name}.manifest.json").read_text())
        official = man["full"].get("measure_omp_passive", {}).get("median_s")
        proc = subprocess.run([sys.executable, "-c", CHILD, name, str(a.repeat), str(ROOT)], capture_output=True,
                              text=True, env=env)
        if proc.returncode:
            rows.append({"model": name, "error": proc.stderr.strip().splitlines()[-1][:200]})
            print(f"{name}: ERROR {rows[-1]['error']}", file=sys.stderr)
            continue
        t = json.loads(proc.stdout.strip().splitlines()[-1])
        row = {"model": name, "official_s": official, "fp32_s": round(t["fp32"], 4), "bf16_s": round(t["bf16"], 4),
               "speedup_fp32": round(official / t["fp32"], 2) if official else None,
               "speedup_bf16": round(official / t["bf16"], 2) if official else None}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print("| model | official s (passive) | ours fp32 s | × | ours bf16 s | × |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | error: {r['error']} | | | | |")
        else:
            print(f"| {r['model']} | {r['official_s']:.4f} | {r['fp32_s']:.4f} | {r['speedup_fp32']} | "
                  f"{r['bf16_s']:.4f} | {r['speedup_bf16']} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
