#!/usr/bin/env python
"""Why imgsynth sets OMP_WAIT_POLICY=PASSIVE: forward time of a small and a medium network
under the default OpenMP policy and under PASSIVE, with 1 and 2 threads, each in a fresh process.

    python benchmarks/threads.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from imgsynth.models.registry import build_model
cases = {"dcgan64 (small)": ("dcgan", {"z_dim": 100, "ngf": 64, "img_channels": 3, "img_resolution": 64}, lambda: torch.randn(1, 100)),
         "conv 64ch 128x128 x4 (medium)": (None, None, lambda: torch.randn(1, 64, 128, 128))}
out = {}
for name, (arch, cfg, mk) in cases.items():
    if arch:
        net = build_model(arch, cfg).eval()
    else:
        net = torch.nn.Sequential(*[torch.nn.Conv2d(64, 64, 3, padding=1) for _ in range(4)]).eval()
    x = mk()
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        ts = []
        for _ in range(15):
            t = time.perf_counter(); net(x); ts.append(time.perf_counter() - t)
    ts.sort()
    out[name] = ts[len(ts) // 2] * 1000
print(json.dumps(out))
"""


def main() -> int:
    rows = []
    for policy in ("default", "PASSIVE"):
        for threads in (1, 2):
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            if policy != "default":
                env["OMP_WAIT_POLICY"] = policy
            res = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=env, capture_output=True, text=True)
            if res.returncode:
                print(res.stderr, file=sys.stderr)
                return 1
            rows.append({"policy": policy, "threads": threads, "ms": json.loads(res.stdout)})
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
