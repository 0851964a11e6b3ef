"""Liu et al. 2018 inpainting loss terms, the VGG-16 feature loader and the SSIM structure term."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from imgsynth.errors import WeightsError
from imgsynth.training.losses import (
    VGG16Features,
    gram_matrix,
    inpainting_losses,
    ssim_loss,
)


def random_vgg_file(tmp_path):
    """A torchvision-layout VGG-16 state dict (random values, plus a classifier key to ignore)."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in VGG16Features().state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(4)
    path = tmp_path / "vgg16.safetensors"
    save_file(state, str(path))
    return path


def test_l1_terms_split_at_the_mask():
    gt = torch.zeros(1, 3, 8, 8)
    out = torch.ones(1, 3, 8, 8)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., :2, :] = 0  # a quarter of the pixels is hole
    t = inpainting_losses(out, gt, mask, tv=0.0)
    assert set(t) == {"valid", "hole"}
    assert t["valid"].item() == pytest.approx(0.75)
    assert t["hole"].item() == pytest.approx(6 * 0.25)


def test_tv_only_near_the_hole():
    gt = torch.zeros(1, 3, 16, 16)
    out = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 1, 16, 16)
    assert inpainting_losses(out, gt, mask, valid=0, hole=0)["tv"].item() == 0  # no hole: comp = gt
    mask[..., 4:8, 4:8] = 0
    tv = inpainting_losses(out, gt, mask, valid=0, hole=0)["tv"]
    assert tv.item() > 0
    # changing the output far from the hole changes nothing (comp there is gt anyway)
    out2 = out.clone()
    out2[..., 12:, 12:] += 5
    assert torch.equal(inpainting_losses(out2, gt, mask, valid=0, hole=0)["tv"], tv)


def test_border_term_counts_only_the_hole_band_next_to_known_pixels():
    gt = torch.zeros(1, 3, 16, 16)
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 2:14, 2:14] = 0  # a 12x12 hole; a 2-pixel band of it touches known pixels
    out = torch.zeros(1, 3, 16, 16)
    out[..., 6:10, 6:10] = 7.0  # error only in the hole centre, > 2 px from the border
    out[..., 0, 0] = 9.0  # error on a known pixel
    t = inpainting_losses(out, gt, mask, valid=0, hole=0, tv=0, border=5.0, border_px=2)
    assert t["border"].item() == 0
    out[..., 3, 3] = 1.0  # second ring of the hole: inside the band
    out[..., 4, 4] = 1.0  # third ring: outside it
    t = inpainting_losses(out, gt, mask, valid=0, hole=0, tv=0, border=5.0, border_px=2)
    assert t["border"].item() == pytest.approx(5.0 * 3 / out.numel())
    assert "border" not in inpainting_losses(out, gt, mask)  # off by default


def test_perceptual_and_style_with_vgg_weights(tmp_path):
    vgg = VGG16Features.from_file(random_vgg_file(tmp_path))
    assert not any(p.requires_grad for p in vgg.parameters())
    g = torch.Generator().manual_seed(1)
    gt = torch.randn(2, 3, 32, 32, generator=g)
    mask = (torch.rand(2, 1, 32, 32, generator=g) > 0.3).float()
    same = inpainting_losses(gt.clone(), gt, mask, tv=0.0, vgg=vgg)
    assert {"perceptual", "style_out", "style_comp"} <= set(same)
    assert all(v.item() == 0 for v in same.values())
    out = torch.randn(2, 3, 32, 32, generator=g, requires_grad=True)
    terms = inpainting_losses(out, gt, mask, vgg=vgg)
    assert terms["perceptual"].item() > 0 and terms["style_out"].item() > 0
    sum(terms.values()).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_gram_matrix_is_normalised_by_chw():
    f = torch.ones(1, 2, 3, 4)
    assert torch.allclose(gram_matrix(f), torch.full((1, 2, 2), 12 / 24))


def test_vgg_file_errors(tmp_path):
    with pytest.raises(WeightsError, match="do not exist"):
        VGG16Features.from_file(tmp_path / "none.pth")
    bad = tmp_path / "bad.safetensors"
    save_file({"features.0.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(WeightsError, match="not a torchvision VGG-16"):
        VGG16Features.from_file(bad)
    pth = tmp_path / "vgg16.pth"
    torch.save({k: v for k, v in VGG16Features().state_dict().items()}, pth)
    assert isinstance(VGG16Features.from_file(pth), VGG16Features)


def test_ssim_matches_the_benchmark_definition():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.inpaint_bins import ssim as bench_ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double() / 255
    assert ssim_loss(ta, ta).item() == pytest.approx(0, abs=1e-12)
    # same window and constants; the benchmark rounds luminance to uint8, hence the tolerance
    assert 1 - ssim_loss(ta, tb).item() == pytest.approx(bench_ssim(a, b), abs=0.01)


def test_lowpass_mse_compares_block_means_including_partial_edge_blocks():
    from imgsynth.training.losses import lowpass_mse

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 10, 9, generator=g), torch.randn(2, 3, 10, 9, generator=g)
    want = 0.0
    count = 0
    for y in range(0, 10, 4):
        for x in range(0, 9, 4):
            da = a[..., y:y + 4, x:x + 4].mean((-1, -2)) - b[..., y:y + 4, x:x + 4].mean((-1, -2))
            want += float(da.pow(2).sum())
            count += da.numel()
    assert abs(float(lowpass_mse(a, b, 4)) - want / count) < 1e-6
    # texture moved around inside each block leaves the block means alone; a brightness offset does not
    swapped = b.clone()
    swapped[..., 0:4, 0:4] = b[..., 0:4, 0:4].flip(-1)
    assert float(lowpass_mse(swapped, b, 4)) < 1e-12
    assert abs(float(lowpass_mse(b + 0.5, b, 4)) - 0.25) < 1e-6
