#!/usr/bin/env python
"""fp32 speed of every released config as a fraction of this machine's conv peak, measured in the same run.

    python benchmarks/conformance_speed.py [--models spade_ade20k,...] [--rounds 3] [--out results.json]

For each model with a ``full`` section in ``../shared/conformance/data/<model>.manifest.json``, the
released config is read off the official key/shape list by our converters' ``infer_config`` (the
path a user's real checkpoint takes), the network is built with random weights, and batch-1
forwards on inputs of the recorded shapes are timed in fp32 (inference mode, torch's threads).

Nothing is divided by a time from another run. In the same process, interleaved with the model's
forwards (conv, model, conv, model, ...), the script times the reference operation of the machine:
a 3x3 convolution 256 -> 256 channels on a 64x64 map, batch 1, in NCHW and in channels-last. Its
faster layout gives the *peak* (GFLOP/s); the model's executed GFLOP are counted by
``torch.utils.flop_counter`` on imgsynth's own forward; the reported fraction is the median over
rounds of (model GFLOP/s) / (the peak measured next to it in that round). A machine line (CPU model,
AVX2 / AVX-512 / AVX512-BF16 / AMX, torch build, threads, load average before and after) goes with
every table. The official CPU times stored in the manifests were measured on another machine (with
AVX-512 and AVX512-BF16); they are printed only under that label and never divided by.

Video generators (families ``vid2vid``, ``imaginaire_vid2vid``, ``imaginaire_fs_vid2vid``) are built
by the converters' ``config_from_options`` from the ``full`` key/shape list and ``full.options``, and
timed on one generation step at the released size, batch 1: vid2vid a full step of every spatial
scale (the window of one-hot + edge label maps, each scale's own history of previous frames, the
warp on); its first-frame ``netG_i`` on one one-hot label map; imaginaire vid2vid a steady-state
frame (a full window of previous labels / frames: flow, warp and multi-SPADE combine); few-shot
vid2vid a later frame with the references encoded once beforehand. The manifests' FLOP counts are of
the same step (the warp is no counted op there nor here), but for one difference: the official
few-shot model caches only the generated weights and re-encodes its references every frame (3.5 of
593 GFLOP at 512x512), where imgsynth's ``references=`` keeps the encoding too (it depends on the
references only).

Each model runs in a fresh process so one model's memory and thread pools do not affect the next.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "conformance" / "data"
OFFICIAL_LABEL = "official s (manifest, AVX-512 machine)"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch is imported
if str(ROOT) not in sys.path:  # run as a script: this checkout's imgsynth, not an installed one
    sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------ the machine


def machine_info() -> dict[str, Any]:
    """CPU model and flags, torch build, threads and the load average, as one record."""
    import torch

    from imgsynth.engine.device import cpu_flags, cpu_native_precision, prepare_allocator

    flags = cpu_flags()
    return {
        **flags,
        "native_bf16": cpu_native_precision("bf16"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "malloc_reuse": prepare_allocator(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: dict[str, Any]) -> str:
    """``CPU AMD EPYC (2 cores; AVX2 yes, AVX-512 no, AVX512-BF16 no, AMX no), torch 2.x (AVX2 kernels), ...``."""
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    load = info.get("loadavg_after")
    load_txt = f"load average {info['loadavg'][0]:.2f}" + (f" -> {load[0]:.2f}" if load else "")
    return (f"CPU {info['model']} ({info['cores']} cores; AVX2 {yn(info['avx2'])}, AVX-512 {yn(info['avx512'])}, "
            f"AVX512-BF16 {yn(info['avx512_bf16'])}, AMX {yn(info['amx'])}), torch {info['torch']} "
            f"({info['torch_cpu_capability']} kernels), Python {info['python']}, {info['threads']} threads "
            f"({info['interop_threads']} inter-op), OMP_WAIT_POLICY={info['omp_wait_policy']}, "
            f"malloc {'keeps freed blocks' if info.get('malloc_reuse') else 'as the system sets it'}, {load_txt}")


# ------------------------------------------------------------------ measuring


def count_flops(fn: Callable[[], Any]) -> int:
    """Executed FLOPs of one call of ``fn``, as ``torch.utils.flop_counter`` counts them (2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    from imgsynth.layers.fast_conv import register_flop_formulas

    register_flop_formulas()  # the oneDNN fused convs of the CPU inference paths count too

    class _Global:
        """Count every op under "Global" only: the per-module tracker's autograd hooks fail on
        parameters used through views under inference mode (StyleGAN2's constant input)."""

        parents = {"Global"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _Global()
    with counter:
        fn()
    return int(counter.get_total_flops())


def conv_peak_ops(channels: int = 256, size: int = 64) -> tuple[dict[str, Callable[[], Any]], int]:
    """The reference 3x3 convolution in NCHW and channels-last, and its FLOPs."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=gen)
    w = torch.randn(channels, channels, 3, 3, generator=gen) * 0.02
    b = torch.zeros(channels)
    xc, wc = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    ops = {"nchw": lambda: F.conv2d(x, w, b, padding=1), "channels_last": lambda: F.conv2d(xc, wc, b, padding=1)}
    return ops, 2 * channels * channels * 9 * size * size


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(forward: Callable[[], Any], *, rounds: int = 3, conv_calls: int = 3, min_round_s: float = 0.3,
            conv_channels: int = 256, conv_size: int = 64) -> dict[str, Any]:
    """Time ``forward`` interleaved with the reference conv; GFLOP, GFLOP/s and the fraction of the peak.

    The sequence is conv, model, conv, model, ..., conv: each conv step times ``conv_calls`` calls
    in each layout (median per layout), each model step repeats the forward until ``min_round_s``
    has passed (for networks of a few milliseconds; median call). A model step's peak is the faster
    layout's time averaged over the conv steps just before and just after it, and ``fraction`` is
    the median over rounds of model GFLOP/s divided by that peak, so a load change moves both
    sides of each ratio together.
    """
    import torch

    convs, conv_flop = conv_peak_ops(conv_channels, conv_size)

    def conv_step() -> dict[str, float]:
        return {k: statistics.median(_timed(op) for _ in range(conv_calls)) for k, op in convs.items()}

    with torch.inference_mode():
        flop = count_flops(forward)  # also the warm-up: oneDNN primitives, weight caches
        for op in convs.values():
            op()
        conv_steps, model_s = [conv_step()], []
        for _ in range(rounds):
            times, start = [], time.perf_counter()
            while not times or time.perf_counter() - start < min_round_s:
                times.append(_timed(forward))
            model_s.append(statistics.median(times))
            conv_steps.append(conv_step())
    around = [{k: (a[k] + b[k]) / 2 for k in a} for a, b in zip(conv_steps, conv_steps[1:])]
    peak = [conv_flop / min(c.values()) / 1e9 for c in around]
    gflops = [flop / t / 1e9 for t in model_s]
    ratios = [g / p for g, p in zip(gflops, peak)]
    layout = lambda k: statistics.median(conv_flop / c[k] / 1e9 for c in around)  # noqa: E731
    return {
        "gflop": flop / 1e9,
        "fp32_s": statistics.median(model_s),
        "gflops": statistics.median(gflops),
        "peak_gflops": statistics.median(peak),
        "peak_nchw_gflops": layout("nchw"),
        "peak_cl_gflops": layout("channels_last"),
        "fraction": statistics.median(ratios),
        "fraction_range": [min(ratios), max(ratios)],
        "rounds": rounds,
    }


# ------------------------------------------------------------------ the released configs


def _shapes(manifest: dict, real: bool = False) -> dict:
    """The official key -> tensor layout: meta tensors, or all-ones ones where a converter reads values."""
    import torch

    sd = {}
    for key, spec in manifest["full"]["state_dict"].items():
        shape, dtype = (spec["shape"], spec.get("dtype", "float32")) if isinstance(spec, dict) else (spec, "float32")
        dt = getattr(torch, str(dtype).replace("torch.", ""))
        sd[key] = torch.ones(shape, dtype=dt) if real else torch.empty(shape, dtype=dt, device="meta")
    return sd


def released_names() -> list[str]:
    """Every conformance manifest with a ``full`` (released config) section."""
    return sorted(p.name[: -len(".manifest.json")] for p in DATA.glob("*.manifest.json")
                  if p.name != "manifest.json" and "full" in json.loads(p.read_text()))


VIDEO_FAMILIES = ("vid2vid", "imaginaire_vid2vid", "imaginaire_fs_vid2vid")


def _onehot_blocks(gen, classes: int, height: int, width: int, *, block: int = 8, lead: tuple = (1,)):
    """(*lead, classes, height, width) float one-hot label maps of random ids constant on
    ``block`` x ``block`` squares (label maps have regions, not per-pixel noise), and the ids."""
    import torch

    ids = torch.randint(0, classes, (*lead, -(-height // block), -(-width // block)), generator=gen)
    ids = ids.repeat_interleave(block, -2).repeat_interleave(block, -1)[..., :height, :width]
    return torch.nn.functional.one_hot(ids, classes).movedim(-1, -3).float(), ids


def released_size(full: dict) -> tuple[int, int]:
    """(H, W) of the released output: the recorded input shapes (finest scale), else the size
    ``full.options`` names (``H``/``W``, imaginaire's ``data.val_resize_h_w`` / ``output_h_w``).

    Raises ``KeyError`` when the manifest records none (no size is made up).
    """
    recorded = full.get("input_shapes_per_scale") or full.get("input_shapes")
    if recorded:
        return int(recorded[-1][-2]), int(recorded[-1][-1])
    opts = full.get("options") or {}
    if opts.get("H") and opts.get("W"):
        return int(opts["H"]), int(opts["W"])
    data = opts.get("data") or {}
    for key in ("val_resize_h_w", "output_h_w", "resize_h_w"):
        if data.get(key):
            h, w = (int(v) for v in str(data[key]).split(","))
            return h, w
    raise KeyError("the manifest records no input shapes and full.options names no image size "
                   "(H/W, data.val_resize_h_w, data.output_h_w)")


class _CachedReferences:
    """Few-shot vid2vid at a later frame of a sequence (K = 1): the references are encoded once
    (``encode_references``: the reference encoder and the hyper-network weights; the official eval
    mode caches the weights until ``reset()``), each call generates one frame."""

    def __init__(self, gen, ref_labels, ref_images) -> None:
        import torch

        self.gen = gen
        with torch.no_grad():
            self.references = gen.encode_references(ref_labels, ref_images)

    def eval(self) -> "_CachedReferences":
        self.gen.eval()
        return self

    def __call__(self, label, ref_labels, ref_images, prev_labels, prev_images):
        return self.gen(label, ref_labels, ref_images, prev_labels, prev_images, references=self.references)


def video_build_and_inputs(name: str, man: dict):
    """(callable in eval mode with random weights, inputs of one generation step) for a video manifest.

    The network is built from ``full.state_dict`` (shapes) and ``full.options`` by the converters'
    ``config_from_options``, and the converter is run on the key/shape list (every key mapped,
    every shape as the model has it), as the conformance tests load real weights.
    """
    import torch

    from imgsynth.convert import imaginaire as imaginaire_convert
    from imgsynth.convert import vid2vid as vid2vid_convert
    from imgsynth.models.registry import build_model

    full = man.get("full") or {}
    if not full.get("state_dict"):
        raise KeyError(f"{name}: no released config: the manifest's full section is empty "
                       f"(a reduced-only conformance variant, {man.get('class', man.get('family'))}; released "
                       f"checkpoint: {man.get('released_checkpoint') or 'none'})")
    try:
        h, w = released_size(full)
    except KeyError as e:
        raise KeyError(f"{name}: {e.args[0]}") from None
    options = full.get("options") or {}
    sd = _shapes(man)
    if man["family"] == "vid2vid":
        arch, cfg = vid2vid_convert.config_from_options(sd, options)
        convert = vid2vid_convert.from_official if arch == "vid2vid" else vid2vid_convert.from_official_first_frame
    else:
        arch, cfg = imaginaire_convert.config_from_options(sd, options)
        convert = (imaginaire_convert.from_vid2vid if arch == "imaginaire_vid2vid"
                   else imaginaire_convert.from_fs_vid2vid)
    convert(sd, cfg)  # raises unless the official keys map one to one onto the model's, shapes included
    torch.manual_seed(0)
    model = build_model(arch, cfg).eval()
    gen = torch.Generator().manual_seed(0)

    def frames(*lead: int, channels: int = 3):
        return torch.rand(*lead, channels, h, w, generator=gen) * 2 - 1

    if arch == "vid2vid":
        window = []
        for _ in range(model.n_frames):  # instance ids = the label regions (edges on their borders)
            _, ids = _onehot_blocks(gen, max(model.label_nc, 2), h, w)
            frame = ids[:, None] if model.label_nc > 0 else frames(1, channels=model.input_nc)
            window.append(model.encode_frame(frame, ids[:, None] if model.use_instance else None))
        labels = torch.cat(window, 1)
        history = model.initial_history([frames(1, channels=model.output_nc) for _ in range(model.n_frames - 1)])
        recorded = full.get("input_shapes_per_scale")
        if recorded:
            made = [[1, labels.shape[1], *x.shape[-2:]] for x in history]
            if made != [list(r) for r in recorded]:
                raise ValueError(f"{name}: one step's label pyramid {made} is not the recorded {recorded}")
        return model, [labels, history]
    if arch.startswith("pix2pixhd"):  # the first-frame netG_i: one-hot labels, no edge channel
        labels = _onehot_blocks(gen, cfg["label_nc"], h, w)[0].contiguous()
        _check_recorded(name, full, [labels])
        return model, [labels]
    if arch == "imaginaire_vid2vid":
        c, k = model.label_channels, model.num_frames - 1
        label, prev_labels = (_onehot_blocks(gen, c, h, w, lead=lead)[0].contiguous() for lead in ((1,), (1, k)))
        _check_recorded(name, full, [label])
        return model, [label, prev_labels, frames(1, k, channels=model.image_channels)]
    # few-shot vid2vid: drawn landmark edges are thin 0/1 curves; a sparse random 0/1 map stands in
    c, k, t = model.label_channels, model.few_shot_k, model.num_frames - 1

    def edges(*lead: int):
        return (torch.rand(*lead, c, h, w, generator=gen) < 0.05).float()

    label, ref_labels, ref_images = edges(1), edges(1, k), frames(1, k, channels=model.image_channels)
    _check_recorded(name, full, [label])
    # K = 1: the hyper-weights are cached (official eval mode); K > 1: they depend on the current
    # label (attention), so every frame recomputes them, as the official code does
    step = _CachedReferences(model, ref_labels, ref_images) if k == 1 else model
    return step, [label, ref_labels, ref_images, edges(1, t), frames(1, t, channels=model.image_channels)]


def _check_recorded(name: str, full: dict, inputs: list) -> None:
    """The leading inputs must have the manifest's recorded ``input_shapes`` (where recorded)."""
    recorded = full.get("input_shapes") or []
    made = [list(x.shape) for x in inputs[: len(recorded)]]
    if made != [list(r) for r in recorded]:
        raise ValueError(f"{name}: inputs {made} are not the recorded {recorded}")


def build_and_inputs(name: str, data: Path = DATA):
    """(network in eval mode with random weights, forward inputs) for the released config of ``name``.

    ``data``: the folder of the manifests (a test passes reduced ones). Raises ``KeyError`` for a
    family this build has no model class for, or a manifest with no released config.
    """
    import torch

    from imgsynth.convert import dcgan, pconv, pix2pix, pix2pixhd, progan, spade, stylegan2_pkl
    from imgsynth.models.registry import build_model

    man = json.loads((data / f"{name}.manifest.json").read_text())
    if man.get("family") in VIDEO_FAMILIES:
        return video_build_and_inputs(name, man)
    shapes = (man.get("full") or {}).get("input_shapes")
    if not shapes:
        raise KeyError(f"{name}: the manifest records no batch-1 input shapes")
    known = ("spade_", "pix2pixhd_", "pix2pix_", "cyclegan_", "dcgan_", "pgan_", "stylegan2ada_", "pconv_unet")
    if not name.startswith(known):
        raise KeyError(f"{name}: no imgsynth model class for the {man.get('family', '?')} family in this build")
    sd = _shapes(man, real=name.startswith("pconv_unet"))
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
    else:
        arch, cfg = "pconv_unet", {**pconv.infer_config({"model": sd}), "renorm": "naoto"}
    torch.manual_seed(0)
    model = build_model(arch, cfg).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = []
    for i, shape in enumerate(shapes):
        if name.startswith(("spade_", "pix2pixhd_")):
            inputs.append(_onehot_blocks(gen, shape[1], shape[2], shape[3], lead=(shape[0],))[0])
        elif name.startswith("pconv_unet") and i == 1:
            hole = torch.rand(shape[0], 1, shape[2] // 16, shape[3] // 16, generator=gen) < 0.3
            inputs.append((~hole).float().repeat_interleave(16, 2).repeat_interleave(16, 3).expand(shape).contiguous())
        else:
            inputs.append(torch.randn(*shape, generator=gen))
    if name.startswith("pconv_unet"):
        inputs[0] = inputs[0] * inputs[1]
    return model, inputs


CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
from imgsynth.engine.device import prepare_runtime
prepare_runtime()  # as the CLI does, before torch is imported
from benchmarks.conformance_speed import build_and_inputs, measure
name, rounds = sys.argv[1], int(sys.argv[2])
try:
    model, inputs = build_and_inputs(name)
except KeyError as e:
    print(json.dumps({"skipped": str(e.args[0])}))
    sys.exit(0)
print(json.dumps(measure(lambda: model(*inputs), rounds=rounds)))
"""


def run_models(names: Sequence[str], rounds: int, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Measure every model in a fresh process; the machine record with the load before and after."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    os.environ.setdefault("OMP_WAIT_POLICY", env["OMP_WAIT_POLICY"])
    info = machine_info()
    rows = []
    for name in names:
        man = json.loads((DATA / f"{name}.manifest.json").read_text())
        full = man.get("full") or {}
        official = (full.get("measure_omp_passive") or full.get("measure") or {}).get("median_s")
        proc = subprocess.run([sys.executable, "-c", CHILD, name, str(rounds), str(ROOT)], capture_output=True,
                              text=True, env=env)
        row: dict[str, Any] = {"model": name, "family": man.get("family")}
        if proc.returncode:
            row["error"] = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:200]
        else:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            row["official_avx512_s"] = official
        rows.append(row)
        log(json.dumps(row))
    info["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"machine": info, "machine_line": machine_line(info), "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(result: dict[str, Any]) -> str:
    """The table, with the machine line above it."""
    lines = [f"Machine: {result['machine_line']}; {result['date']}.", "",
             "| model | fp32 s | GFLOP | GFLOP/s | conv peak GFLOP/s (NCHW / CL) | fraction of peak | "
             f"{OFFICIAL_LABEL} |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['model']} | {r.get('error') or 'skipped: ' + r['skipped']} | | | | | |")
            continue
        off = f"{r['official_avx512_s']:.4g}" if r.get("official_avx512_s") else ""
        lo, hi = r["fraction_range"]
        lines.append(f"| {r['model']} | {r['fp32_s']:.4g} | {r['gflop']:.4g} | {r['gflops']:.1f} | "
                     f"{r['peak_gflops']:.1f} ({r['peak_nchw_gflops']:.1f} / {r['peak_cl_gflops']:.1f}) | "
                     f"{r['fraction']:.2f} ({lo:.2f}-{hi:.2f}) | {off} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma list (default: every manifest with a full section)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved conv/model rounds per model")
    ap.add_argument("--out", type=Path, help="write the JSON record here")
    a = ap.parse_args()
    names = a.models.split(",") if a.models else released_names()
    result = run_models(names, a.rounds, log=lambda s: print(s, file=sys.stderr, flush=True))
    sys.stdout.write(markdown(result))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
