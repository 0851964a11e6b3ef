#!/usr/bin/env python
"""Where a released config's fp32 forward spends its time: torch.profiler, grouped by operator kind.

    python benchmarks/profile_families.py --models pix2pix_unet256_facades,... [--shapes 20] [--out results.json]

One warm-up forward, then one profiled forward (batch 1, torch's threads). Operators are grouped
into convolution, normalisation, activation, padding, copies/layout, interpolation and other by
their aten name; the table gives each group's share of the forward's self CPU time. The machine
line of ``benchmarks/conformance_speed.py`` goes with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from imgsynth.engine.device import prepare_runtime  # noqa: E402

prepare_runtime()  # as the CLI does, before torch is imported

GROUPS = [
    ("convolution", ("conv", "mkldnn_convolution", "addmm", "mm", "bmm", "linear", "embedding_bag")),
    ("normalisation", ("norm", "var_mean", "mean", "std", "rsqrt")),
    ("activation", ("relu", "leaky", "tanh", "sigmoid", "elu", "gelu", "clamp", "hardtanh")),
    ("padding", ("pad", "reflection", "replication")),
    ("copies / layout", ("copy", "contiguous", "clone", "cat", "to", "empty", "fill", "zero")),
    ("interpolation", ("upsample", "interpolate", "index", "repeat")),
]


def group_of(op: str) -> str:
    name = op.replace("aten::", "").lower()
    for group, keys in GROUPS:
        if any(k == name or name.startswith(k) or f"_{k}" in name or k in name.split("_") for k in keys):
            return group
    return "other"


def profile(name: str, top: int = 12, shapes: int = 0) -> dict:
    """Shares of the forward's self CPU time by operator group and operator; with ``shapes``, also
    the ``shapes`` costliest (operator, input shapes) pairs, which name the layers."""
    import torch
    from torch.profiler import ProfilerActivity, profile as prof

    from benchmarks.conformance_speed import build_and_inputs

    model, inputs = build_and_inputs(name)
    with torch.inference_mode():
        model(*inputs)
        with prof(activities=[ProfilerActivity.CPU], record_shapes=bool(shapes)) as p:
            model(*inputs)
    events = [e for e in p.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    groups: dict[str, float] = {}
    for e in events:
        g = group_of(e.key)
        groups[g] = groups.get(g, 0.0) + e.self_cpu_time_total
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    layers = []
    if shapes:
        by_shape = [e for e in p.key_averages(group_by_input_shape=True) if e.key.startswith("aten::")]
        layers = [{"op": e.key, "shapes": [list(s) for s in e.input_shapes if s], "calls": e.count,
                   "ms": round(e.self_cpu_time_total / 1e3, 3), "share": round(e.self_cpu_time_total / total, 3)}
                  for e in sorted(by_shape, key=lambda e: -e.self_cpu_time_total)[:shapes]]
    return {"model": name, "self_cpu_s": total / 1e6, "layers": layers,
            "groups": {g: round(t / total, 3) for g, t in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops": [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count}
                        for e in ops]}


def main() -> int:
    from benchmarks.conformance_speed import machine_info, machine_line

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma list of conformance manifest names")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--shapes", type=int, default=0, metavar="N",
                    help="also list the N costliest operators by input shapes (the layers)")
    a = ap.parse_args()
    rows = []
    info = machine_info()
    print(f"Machine: {machine_line(info)}")
    for name in a.models.split(","):
        r = profile(name, shapes=a.shapes)
        rows.append(r)
        groups = ", ".join(f"{g} {s:.0%}" for g, s in r["groups"].items())
        ops = ", ".join(f"{o['op'].replace('aten::', '')} {o['share']:.0%}" for o in r["top_ops"][:6])
        print(f"{name}: {r['self_cpu_s']:.2f} s self CPU; {groups}; top ops: {ops}", flush=True)
        for layer in r["layers"]:
            print(f"  {layer['share']:6.1%} {layer['ms']:10.3f} ms  x{layer['calls']:<3} {layer['op'].replace('aten::', '')} "
                  f"{layer['shapes']}", flush=True)
    if a.out:
        a.out.write_text(json.dumps({"machine": info, "machine_line": machine_line(info), "rows": rows},
                                    indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
