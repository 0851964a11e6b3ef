"""Multi-frame rollouts of the video generators against the recorded official ones.

check.py runs the single-step cases; the manifests' ``rollouts`` (five frames each, tensors under
``<rollout>/aux/*``) are the official test loops: NVIDIA/vid2vid ``test.py`` with ``--no_first_img``
(zero history, ``use_raw_only`` on the first call) and with ``--use_single_G`` (first frames from
``netG_i``, each scale keeping its own history), imaginaire's ``test_single`` loop (previous labels
and generated frames slid by ``concat_frames``), and few-shot vid2vid with fixed references. The
loops below use only the public model API (``encode_frame`` / ``initial_history`` /
``update_history`` / ``push_frame`` / ``encode_references``).

Tolerance: each frame feeds the next, so float32 rounding grows along a rollout (the flow,
warp and, in train mode, batch-1 BatchNorm amplify it). The same two-scale rollout computed in
float64 differs from the recorded float32 one by 3.8e-5, 8.3e-5, 1.5e-4 on frames 2, 3, 4: that
is the reference's own rounding, not ours. Frames pass iff max|out - ref| <= 1e-3 * max(1,
max|ref|); a wrong semantic choice is far outside it (``test_rollout_tolerance_discriminates``:
the other ``align_corners`` changes the frames by > 1e-2).
"""

from __future__ import annotations

import os

import pytest
import torch

from cases_video import DATA, first_frame_generator, fs_generator, imaginaire_generator, manifest_options, vid2vid_generator
from imgsynth.layers.label_maps import one_hot
from imgsynth.models.imaginaire_vid2vid import push_frame

pytestmark = pytest.mark.conformance

ATOL = 1e-3


def _rollout_no_first_img(gen, io, mode: str, *, align_corners: bool = False) -> list[float]:
    """Max errors of the frames test.py writes, with ``--no_first_img``."""
    key = f"rollout_no_first_img_{mode}/aux"
    labels, inst, frames = io[f"{key}/label"], io[f"{key}/inst"], io[f"{key}/frames"]
    t_all, _, h, w = frames.shape
    x = [gen.encode_frame(labels[t : t + 1], inst[t : t + 1]) for t in range(t_all)]
    history = gen.zero_history(1, h, w)
    n = gen.n_frames
    for t in range(n - 1):
        _assert_close(torch.zeros(1, 3, h, w), frames[t : t + 1], f"history frame {t}")
    errors = []
    with torch.no_grad():
        for t in range(n - 1, t_all):
            out = gen(torch.cat(x[t - n + 1 : t + 1], 1), history, use_raw_only=t == n - 1, align_corners=align_corners)
            errors.append(float((out.image - frames[t : t + 1]).abs().max()))
            history = gen.update_history(history, out)
    return errors


def _load(name: str):
    if not DATA.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {DATA} is missing: conformance must run in CI")
        pytest.skip(f"{DATA} not found (conformance data lives beside the repo, not in it)")
    from safetensors.torch import load_file

    return load_file(DATA / f"{name}.weights.safetensors"), load_file(DATA / f"{name}.io.safetensors")


def _assert_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    err = float((got.double() - ref.double()).abs().max())
    tol = ATOL * max(1.0, float(ref.abs().max()))
    assert err <= tol, f"{what}: max|err| {err:.3e} > {tol:.1e}"


def _mode(module: torch.nn.Module, mode: str) -> None:
    module.train() if mode == "train" else module.eval()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_vid2vid_no_first_img(mode: str) -> None:
    weights, io = _load("vid2vid_composite_fg")
    gen = vid2vid_generator(weights, manifest_options("vid2vid_composite_fg"))
    _mode(gen, mode)
    for t, err in enumerate(_rollout_no_first_img(gen, io, mode)):
        assert err <= ATOL, f"frame {t + gen.n_frames - 1}: max|err| {err:.3e} > {ATOL:.1e}"


def test_rollout_tolerance_discriminates() -> None:
    weights, io = _load("vid2vid_composite_fg")
    gen = vid2vid_generator(weights, manifest_options("vid2vid_composite_fg")).eval()
    errors = _rollout_no_first_img(gen, io, "eval", align_corners=True)
    assert max(errors[1:]) > 10 * ATOL, errors


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_vid2vid_two_scales_single_G(mode: str) -> None:
    weights, io = _load("vid2vid_composite_local2")
    single_weights, _ = _load("vid2vid_single_G")
    gen = vid2vid_generator(weights, manifest_options("vid2vid_composite_local2"))
    first = first_frame_generator(single_weights)
    _mode(gen, mode)
    _mode(first, mode)
    key = f"rollout_single_G_{mode}/aux"
    labels, inst, frames = io[f"{key}/label"], io[f"{key}/inst"], io[f"{key}/frames"]
    n = gen.n_frames
    x = [gen.encode_frame(labels[t : t + 1], inst[t : t + 1]) for t in range(frames.shape[0])]
    with torch.no_grad():
        firsts = [first(one_hot(labels[t : t + 1], gen.label_nc)) for t in range(n - 1)]
        for t, img in enumerate(firsts):
            _assert_close(img, frames[t : t + 1], f"netG_i frame {t}")
        history = gen.initial_history(firsts)
        for t in range(n - 1, frames.shape[0]):
            out = gen(torch.cat(x[t - n + 1 : t + 1], 1), history)
            _assert_close(out.image, frames[t : t + 1], f"frame {t}")
            history = gen.update_history(history, out)


def test_imaginaire_vid2vid_rollout() -> None:
    weights, io = _load("imaginaire_vid2vid")
    gen = imaginaire_generator(weights, manifest_options("imaginaire_vid2vid")).eval()
    labels, frames = io["rollout_eval/aux/label_one_hot"], io["rollout_eval/aux/frames"]
    _assert_close(one_hot(io["rollout_eval/aux/label"], gen.label_channels), labels, "one-hot labels")
    prev_labels = prev_images = None
    with torch.no_grad():
        for t in range(frames.shape[0]):
            label = labels[t : t + 1]
            out = gen(label, prev_labels, prev_images)
            _assert_close(out.image, frames[t : t + 1], f"frame {t}")
            assert (out.flow is not None) == (t >= gen.num_frames - 1)
            prev_labels = push_frame(prev_labels, label, gen.num_frames - 1)
            prev_images = push_frame(prev_images, out.image, gen.num_frames - 1)


@pytest.mark.parametrize("name", ["imaginaire_fs_vid2vid", "imaginaire_fs_vid2vid_k2"])
def test_fs_vid2vid_rollout(name: str) -> None:
    weights, io = _load(name)
    gen = fs_generator(weights, manifest_options(name)).eval()
    key = "rollout_eval/aux"
    labels, frames = io[f"{key}/label"], io[f"{key}/frames"]
    ref_labels, ref_images = io[f"{key}/ref_labels"][None], io[f"{key}/ref_images"][None]
    refs = gen.encode_references(ref_labels, ref_images) if gen.few_shot_k == 1 else None
    prev_labels = prev_images = None
    with torch.no_grad():
        for t in range(frames.shape[0]):
            label = labels[t : t + 1]
            out = gen(label, ref_labels, ref_images, prev_labels, prev_images, references=refs)
            _assert_close(out.image, frames[t : t + 1], f"frame {t}")
            prev_labels = push_frame(prev_labels, label, gen.num_frames - 1)
            prev_images = push_frame(prev_images, out.image, gen.num_frames - 1)
