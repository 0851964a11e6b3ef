#!/usr/bin/env python
"""Every released configuration on a GPU: conformance cases per precision, then images/s per family.

    python benchmarks/gpu_check.py [--device cuda] [--precisions fp32,fp16,bf16] [--models a,b] [--out r.json]

(``benchmarks/gpu_check.sh`` runs this with the defaults.) Two parts, each model in turn:

1. **Conformance on the device.** Every recorded case of ``../shared/conformance`` (official
   weights layout, official inputs and outputs) runs through imgsynth's loader
   (``tests/conformance/adapter.py``) on the device, in channels-last, in each precision; the
   output is compared with the official CPU fp32 output. Tolerances, as a maximum absolute error
   relative to ``max(1, max |reference|)``: fp32 the case's own ``atol`` (1e-4 for most) times 10
   (TF32 is switched off; GPU convolution algorithms sum in another order), fp16 ``2e-2``, bf16
   ``6e-2`` (8 mantissa bits). Mean absolute errors are printed too.
2. **Throughput of the released configs.** The full released config of each manifest (random
   weights, ``benchmarks/conformance_speed.build_and_inputs``) runs at batch 1 and batch 8 in
   each precision, channels-last; images/s is the median of 5 timed calls after 2 warm-ups, with
   ``torch.cuda.synchronize`` around each call.

Models whose cases need batch statistics or dropout (train-mode cases) run them as recorded. The
script also runs on ``--device cpu`` (fp32 only, as on a CPU without native bf16), which is how
its test checks it without a GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "conformance"
for p in (ROOT, ROOT / "tests" / "conformance"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

TOLERANCE = {"fp16": 2e-2, "bf16": 6e-2}  # fp32: the case's atol x FP32_FACTOR
FP32_FACTOR = 10


def _dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _to(x: Any, device: Any, dtype: Any) -> Any:
    import torch

    if not isinstance(x, torch.Tensor):
        return x
    x = x.to(device)
    if x.is_floating_point():
        x = x.to(dtype)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    return x


def conformance(model_name: str, device: Any, precision: str) -> list[dict[str, Any]]:
    """The recorded cases of ``model_name`` on ``device`` in ``precision``: errors and pass/fail."""
    import adapter
    import torch
    from safetensors.torch import load_file

    from imgsynth.engine.device import select_dtype

    select_dtype(precision, device)  # refuses a precision the device has no native kernels for
    dtype = _dtype(precision)
    man = json.loads((SHARED / "data" / f"{model_name}.manifest.json").read_text())
    weights = load_file(str(SHARED / "data" / f"{model_name}.weights.safetensors"))
    io = load_file(str(SHARED / "data" / f"{model_name}.io.safetensors"))
    rows = []
    for case in man["cases"]:
        row: dict[str, Any] = {"model": model_name, "case": case["name"], "precision": precision}
        try:
            module = adapter.load(model_name, {k: v.clone() for k, v in weights.items()})
            check = _check_module()
            check.set_mode(module, case["mode"])
            module = module.to(device=device, dtype=dtype, memory_format=torch.channels_last)
            args = [_to(io[f"{case['name']}/in/{n}"], device, dtype) for n in case["inputs"]]
            with torch.no_grad():
                if case.get("seed_before_forward") is not None:
                    torch.manual_seed(case["seed_before_forward"])
                outs = check._as_list(module(*args, **case.get("kwargs", {})))
            errs = []
            for i, name in enumerate(case["outputs"]):
                ref = io[f"{case['name']}/out/{name}"].double()
                got = outs[i].detach().to("cpu", torch.float64)
                scale = max(1.0, float(ref.abs().max()))
                tol = (case.get("atol", 1e-4) * FP32_FACTOR if precision == "fp32" else TOLERANCE[precision]) * scale
                err = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
                errs.append({"output": name, "max_abs_err": err, "mean_abs_err": float((got - ref).abs().mean())
                             if got.shape == ref.shape else None, "tol": tol, "pass": err <= tol})
            row["outputs"], row["pass"] = errs, all(e["pass"] for e in errs)
        except Exception as e:  # noqa: BLE001 - report and keep going over the models
            row["pass"], row["exception"] = False, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        rows.append(row)
    return rows


_CHECK = None


def _check_module():
    global _CHECK
    if _CHECK is None:
        spec = importlib.util.spec_from_file_location("conformance_check", SHARED / "check.py")
        _CHECK = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_CHECK)
    return _CHECK


def throughput(name: str, device: Any, precision: str, batches: tuple[int, ...] = (1, 8),
               calls: int = 5) -> dict[str, Any]:
    """images/s of the released config ``name`` at each batch size (median of ``calls``)."""
    import torch

    from benchmarks.conformance_speed import build_and_inputs

    model, inputs = build_and_inputs(name)
    dtype = _dtype(precision)
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {"model": name, "precision": precision}
    for b in batches:
        xs = [_to(x.expand(b, *x.shape[1:]).contiguous(), device, dtype) for x in inputs]
        try:
            with torch.inference_mode():
                for _ in range(2):
                    model(*xs)
                sync()
                ts = []
                for _ in range(calls):
                    t = time.perf_counter()
                    model(*xs)
                    sync()
                    ts.append(time.perf_counter() - t)
            out[f"b{b}_images_per_s"] = b / statistics.median(ts)
        except torch.OutOfMemoryError:
            out[f"b{b}_images_per_s"] = None
            torch.cuda.empty_cache()
    return out


def main() -> int:
    import torch

    from benchmarks.conformance_speed import released_names

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--models", help="comma list of conformance models (default: every one with a loader)")
    ap.add_argument("--no-speed", action="store_true", help="conformance only")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    import adapter

    from imgsynth.engine.device import select_device, select_dtype

    device = select_device(a.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    from imgsynth.errors import DeviceError

    precisions = []
    for prec in a.precisions.split(","):
        try:
            select_dtype(prec, device)
            precisions.append(prec)
        except DeviceError as e:
            print(f"skipping {prec}: {e}", flush=True)
    names = a.models.split(",") if a.models else sorted(adapter.LOADERS)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; channels-last; tolerances (max abs / max(1, |ref|)): "
          f"fp32 case atol x {FP32_FACTOR}, fp16 {TOLERANCE['fp16']}, bf16 {TOLERANCE['bf16']}", flush=True)
    report: dict[str, Any] = {"device": name, "torch": torch.__version__, "conformance": [], "speed": []}
    failed = 0
    for model_name in names:
        for prec in precisions:
            for r in conformance(model_name, device, prec):
                report["conformance"].append(r)
                failed += not r["pass"]
                detail = r.get("exception") or "  ".join(
                    f"{o['output']}: max {o['max_abs_err']:.2e} mean {o['mean_abs_err'] or 0:.1e} (tol {o['tol']:.0e})"
                    for o in r["outputs"])
                print(f"{'PASS' if r['pass'] else 'FAIL'}  {model_name:34s} {r['case']:22s} {prec}  {detail}",
                      flush=True)
    if not a.no_speed:
        batches = tuple(int(b) for b in a.batches.split(","))
        released = [n for n in released_names() if not a.models or n in names]
        print("\n| model | precision | " + " | ".join(f"images/s b{b}" for b in batches) + " |")
        print("|---|---|" + "---|" * len(batches))
        for n in released:
            for prec in precisions:
                try:
                    r = throughput(n, device, prec, batches)
                except KeyError as e:
                    print(f"| {n} | skipped: {e.args[0]} |", flush=True)
                    break
                report["speed"].append(r)
                cells = " | ".join("OOM" if r[f"b{b}_images_per_s"] is None else f"{r[f'b{b}_images_per_s']:.2f}"
                                   for b in batches)
                print(f"| {n} | {prec} | {cells} |", flush=True)
    if a.out:
        a.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{failed} conformance case(s) failed" if failed else "\nall conformance cases passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
