"""``benchmarks/conformance_speed.py``: same-run conv peak, executed FLOPs and the machine line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.conformance_speed import (
    DATA,
    OFFICIAL_LABEL,
    build_and_inputs,
    machine_info,
    machine_line,
    markdown,
    measure,
    released_names,
    released_size,
)

ROOT = Path(__file__).resolve().parents[1]


def test_measure_counts_executed_flops_and_divides_by_the_same_run_peak():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    x = torch.randn(1, 3, 32, 32)
    r = measure(lambda: net(x), rounds=3, conv_calls=1, min_round_s=0.01, conv_channels=16, conv_size=16)
    expected = 2 * 9 * 32 * 32 * (3 * 8 + 8 * 3)  # 2 FLOPs per multiply-accumulate, bias not counted
    assert r["gflop"] == pytest.approx(expected / 1e9, rel=1e-9)
    # three rounds: the median GFLOP/s is the one of the median time
    assert r["gflops"] == pytest.approx(expected / r["fp32_s"] / 1e9, rel=1e-9)
    assert r["peak_gflops"] == pytest.approx(max(r["peak_nchw_gflops"], r["peak_cl_gflops"]), rel=0.5)
    lo, hi = r["fraction_range"]
    assert 0 < lo <= r["fraction"] <= hi


def test_machine_line_names_the_flags_threads_and_load():
    info = machine_info()
    info["loadavg_after"] = [1.5, 1.0, 0.5]
    line = machine_line(info)
    for word in ("AVX2", "AVX-512", "AVX512-BF16", "AMX", "torch", "threads", "load average", info["model"]):
        assert word in line
    table = markdown({"machine_line": line, "date": "now", "rows": [
        {"model": "m", "fp32_s": 0.5, "gflop": 10.0, "gflops": 20.0, "peak_gflops": 25.0, "peak_nchw_gflops": 25.0,
         "peak_cl_gflops": 24.0, "fraction": 0.8, "fraction_range": [0.7, 0.9], "official_avx512_s": 2.0},
        {"model": "v", "skipped": "no model class"}]})
    assert table.startswith("Machine: CPU") and OFFICIAL_LABEL in table
    assert "| m | 0.5 | 10 | 20.0 | 25.0 (25.0 / 24.0) | 0.80 (0.70-0.90) | 2 |" in table
    assert "| v | skipped: no model class |" in table


@pytest.mark.skipif(not (DATA / "dcgan_examples.manifest.json").exists(), reason="needs ../shared/conformance")
def test_script_on_a_released_config(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "conformance_speed.py"), "--models",
                           "dcgan_examples", "--rounds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    row = result["rows"][0]
    # pytorch/examples DCGAN at 64x64 (manifest flop counter: 209,256,448 FLOPs)
    assert row["gflop"] == pytest.approx(0.209, abs=1e-3) and row["fp32_s"] > 0 and row["fraction"] > 0
    assert proc.stdout.startswith("Machine: CPU") and "dcgan_examples" in proc.stdout


# --- video generators ----------------------------------------------------------------------------

needs_data = pytest.mark.skipif(not (DATA / "vid2vid_composite_fg.manifest.json").exists(),
                                reason="needs ../shared/conformance")
VIDEO = ["vid2vid_single_G", "vid2vid_composite_fg", "vid2vid_composite_local2", "vid2vid_composite_instance",
         "imaginaire_vid2vid", "imaginaire_fs_vid2vid", "imaginaire_fs_vid2vid_k2"]
RELEASED_VIDEO = ["vid2vid_single_G", "vid2vid_composite_fg", "vid2vid_composite_local2", "imaginaire_vid2vid",
                  "imaginaire_fs_vid2vid"]


@pytest.fixture
def one_thread():
    """Tiny forwards gain nothing from threads, and on a busy machine OpenMP waits cost seconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _reduced(name: str, folder: Path, **full) -> dict:
    """Write ``name``'s manifest into ``folder`` with its ``full`` section replaced by the stored
    (reduced) config: the conformance key/shape list and options (64x128 or 64x64, widths / 4-8)."""
    man = json.loads((DATA / f"{name}.manifest.json").read_text())
    man["full"] = {"options": man["options"], "state_dict": man["state_dict"], **full}
    (folder / f"{name}.manifest.json").write_text(json.dumps(man))
    return man


def _recorded_shapes(man: dict) -> dict:
    """Input shapes as the recorder writes them for the released vid2vid configs, for the reduced one."""
    o = man["options"]
    if "label_nc" not in o:  # netG_i: one one-hot map
        return {"input_shapes": [[1, o["input_nc"], o["H"], o["W"]]]}
    c, s = o["n_frames_G"] * (o["label_nc"] + int(o["use_instance"])), o["n_scales_spatial"]
    return {"input_shapes_per_scale": [[1, c, o["H"] >> (s - 1 - i), o["W"] >> (s - 1 - i)] for i in range(s)]}


def _assert_one_hot(x: torch.Tensor, dim: int) -> None:
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x.sum(dim), torch.ones_like(x.sum(dim)))


@needs_data
@pytest.mark.parametrize("name", VIDEO)
def test_video_config_builds_and_runs_one_step_at_the_reduced_size(name, tmp_path, one_thread):
    man = json.loads((DATA / f"{name}.manifest.json").read_text())
    if man["family"] == "vid2vid":  # the vid2vid manifests record input shapes; the imaginaire ones do not
        man = _reduced(name, tmp_path, **_recorded_shapes(man))
    else:
        man = _reduced(name, tmp_path)
    o = man["options"]
    h, w = o["H"], o["W"]
    model, inputs = build_and_inputs(name, tmp_path)
    with torch.inference_mode():
        out = model(*inputs)
    image = out if isinstance(out, torch.Tensor) else out.image
    assert image.shape == (1, 3, h, w) and image.abs().max() <= 1 and image.std() > 0
    if "label_nc" not in o and man["family"] == "vid2vid":  # netG_i on one-hot labels, no edge channel
        (labels,) = inputs
        assert labels.shape == (1, o["input_nc"], h, w)
        _assert_one_hot(labels, 1)
    elif man["family"] == "vid2vid":  # the label window and each scale's history, all scales in one step
        labels, history = inputs
        fc = o["label_nc"] + 1
        assert labels.shape == (1, o["n_frames_G"] * fc, h, w)
        for f in range(o["n_frames_G"]):
            _assert_one_hot(labels[:, f * fc: f * fc + o["label_nc"]], 1)
            edge = labels[:, f * fc + o["label_nc"]]
            assert set(edge.unique().tolist()) == {0.0, 1.0}
        s = o["n_scales_spatial"]
        assert [tuple(x.shape) for x in history] == [(1, 6, h >> (s - 1 - i), w >> (s - 1 - i)) for i in range(s)]
        assert all(x.abs().max() <= 1 for x in history)
        assert len(out.scales) == s and out.flow.shape == (1, 2, h, w) and out.weight.shape == (1, 1, h, w)
    elif man["family"] == "imaginaire_vid2vid":  # a steady-state frame: the full window, flow and warp run
        label, prev_labels, prev_images = inputs
        k = o["data"]["num_frames_G"] - 1
        classes = o["data"]["one_hot_num_classes"]["seg_maps"]
        assert label.shape == (1, classes, h, w) and prev_labels.shape == (1, k, classes, h, w)
        _assert_one_hot(label, 1)
        _assert_one_hot(prev_labels, 2)
        assert prev_images.shape == (1, k, 3, h, w) and prev_images.abs().max() <= 1
        assert out.flow is not None and out.warped is not None
    else:  # few-shot: K references, a previous frame, both warps
        label, ref_labels, ref_images, prev_labels, prev_images = inputs
        k = o["data"]["initial_few_shot_K"]
        assert ref_labels.shape == (1, k, 1, h, w) and ref_images.shape == (1, k, 3, h, w)
        assert prev_labels.shape == (1, 1, 1, h, w) and prev_images.abs().max() <= 1
        assert set(label.unique().tolist()) == {0.0, 1.0}
        assert out.flow_ref is not None and out.flow_prev is not None
        if k == 1:  # the references are encoded once; recomputing them gives the same frame
            with torch.inference_mode():
                again = model.gen(*inputs)
            torch.testing.assert_close(again.image, out.image)


@needs_data
@pytest.mark.parametrize("name", RELEASED_VIDEO)
def test_released_video_step_counts_the_manifest_flops(name):
    """Full size on the meta device (shapes only, nothing computed): one step's executed FLOPs are
    the official count of the same step (FlopCounterMode, the warp not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    man = json.loads((DATA / f"{name}.manifest.json").read_text())
    measured = man["full"]["measure"]
    official = measured.get("flops_per_frame") or measured["flops"]
    with torch.device("meta"), torch.inference_mode():
        model, inputs = build_and_inputs(name)
        counter = FlopCounterMode(display=False)
        with counter:
            model(*inputs)
        flops = counter.get_total_flops()
        assert inputs[0].shape[-2:] == tuple(man["full"]["output_hw"])
        if man["family"] == "imaginaire_fs_vid2vid":
            # the official eval mode caches the generated weights only and re-encodes the
            # references every frame; imgsynth's references= keeps that encoding too
            counter = FlopCounterMode(display=False)
            with counter:
                model.gen.encode_references(inputs[1], inputs[2])
            encode = counter.get_flop_counts()["Global"][torch.ops.aten.convolution]
            assert 0 < encode < 0.01 * official
            flops += encode
    assert flops == official


@needs_data
def test_video_manifests_without_a_released_config_are_skipped_with_the_reason():
    names = set(released_names())
    assert set(VIDEO) <= names
    for name in set(VIDEO) - set(RELEASED_VIDEO):
        with pytest.raises(KeyError, match="no released config: the manifest's full section is empty"):
            build_and_inputs(name)


def test_released_size_comes_from_the_manifest_and_is_never_made_up():
    assert released_size({"input_shapes_per_scale": [[1, 108, 128, 256], [1, 108, 256, 512]],
                          "options": {"H": 1, "W": 2}}) == (256, 512)
    assert released_size({"input_shapes": [[1, 35, 512, 1024]]}) == (512, 1024)
    assert released_size({"options": {"H": 64, "W": 128}}) == (64, 128)
    assert released_size({"options": {"data": {"val_resize_h_w": "512, 1024"}}}) == (512, 1024)
    assert released_size({"options": {"data": {"output_h_w": "512, 512"}}}) == (512, 512)
    with pytest.raises(KeyError, match="no image size"):
        released_size({"options": {"data": {"num_frames_G": 3}}})


@needs_data
def test_video_config_without_a_size_or_with_other_recorded_shapes_is_refused(tmp_path):
    man = _reduced("imaginaire_vid2vid", tmp_path)
    del man["full"]["options"]["H"], man["full"]["options"]["W"], man["full"]["options"]["data"]["val_resize_h_w"]
    (tmp_path / "imaginaire_vid2vid.manifest.json").write_text(json.dumps(man))
    with pytest.raises(KeyError, match="imaginaire_vid2vid: the manifest records no input shapes"):
        build_and_inputs("imaginaire_vid2vid", tmp_path)
    # a recorded pyramid the step does not make (here: one scale too few) is an error, not a skip
    man = json.loads((DATA / "vid2vid_composite_local2.manifest.json").read_text())
    shapes = _recorded_shapes(man)["input_shapes_per_scale"]
    _reduced("vid2vid_composite_local2", tmp_path, input_shapes_per_scale=shapes[1:])
    with pytest.raises(ValueError, match="label pyramid"):
        build_and_inputs("vid2vid_composite_local2", tmp_path)
