"""The ``inpaint`` job: a slow classical fill reports progress within each photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgsynth.engine.inpaint import InpaintRequest, run_inpaint


def _pair(folder: Path, stem: str, seed: int) -> None:
    y, x = np.mgrid[:48, :56]
    img = np.stack([(x * 9 + y * 5) % 256, (x * 3) % 256, (y * 7) % 256], -1).astype(np.uint8)
    img = np.clip(img + np.random.default_rng(seed).integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(folder / f"{stem}.png")
    hole = np.zeros((48, 56), np.uint8)
    hole[14:30, 18:36] = 255
    Image.fromarray(hole).save(folder / f"{stem}_mask.png")


def test_patchmatch_reports_progress_within_each_photo(tmp_path):
    for k in range(2):
        _pair(tmp_path, f"p{k}", k)
    calls: list[tuple[float, int]] = []
    report = run_inpaint(
        InpaintRequest(inputs=[str(tmp_path / "p0.png"), str(tmp_path / "p1.png")], model="patchmatch",
                       output=str(tmp_path / "out")),
        progress=lambda done, total, message: calls.append((done, total)),
    )
    assert [r.status for r in report.results] == ["ok", "ok"]
    done = [d for d, _ in calls]
    assert all(t == 2 for _, t in calls) and done == sorted(done) and done[-1] == 2
    within = [d for d in done if d != int(d)]
    assert any(0 < d < 1 for d in within) and any(1 < d < 2 for d in within)  # fractions of each photo


def test_make_inpainter_takes_the_card_settings_and_the_overrides():
    """One set-up for `imgsynth inpaint` and `imgsynth serve`: io of the card, --ensemble over it."""
    from types import SimpleNamespace

    import torch

    from imgsynth.engine.inpaint import make_inpainter

    net = SimpleNamespace(model=torch.nn.Identity(), is_network=True,
                          io={"ensemble": 4, "resolution": 128, "normalization": "tanh"})
    card = make_inpainter(net)
    assert (card.ensemble, card.sharp_ensemble, card.resolution, card.normalization) == (4, 1, 128, "tanh")
    asked = make_inpainter(net, strategy="crops", radius=5, seed=7, ensemble=2)
    assert (asked.ensemble, asked.sharp_ensemble, asked.strategy, asked.radius, asked.seed) == (2, 2, "crops", 5, 7)
    classical = make_inpainter(SimpleNamespace(model="telea", is_network=False, io={"ensemble": 4}))
    assert (classical.ensemble, classical.resolution, classical.normalization) == (1, 256, "imagenet")


def test_network_batches_hand_freed_heap_back_after_each_photo(tmp_path, monkeypatch):
    """After each network batch the heap is trimmed (glibc malloc_trim), so that a batch of photos
    does not creep up in resident size; classical fills, which free little, are not trimmed."""
    import imgsynth.engine.inpaint as engine

    trims: list[int] = []
    monkeypatch.setattr(engine, "_malloc_trim", lambda pad: trims.append(pad) or 1)
    for k in range(2):
        _pair(tmp_path, f"p{k}", k)
    inputs = [str(tmp_path / "p0.png"), str(tmp_path / "p1.png")]
    report = run_inpaint(InpaintRequest(inputs=inputs, output=str(tmp_path / "net"), batch_size=1, workers=0))
    assert [r.status for r in report.results] == ["ok", "ok"] and trims == [0, 0]
    trims.clear()
    run_inpaint(InpaintRequest(inputs=inputs, model="telea", output=str(tmp_path / "telea")))
    assert trims == []


def test_trim_heap_is_safe_without_glibc(monkeypatch):
    import imgsynth.engine.inpaint as engine

    monkeypatch.setattr(engine, "_malloc_trim", False)  # what a failed lookup leaves
    engine._trim_heap()
    monkeypatch.setattr(engine, "_malloc_trim", None)
    engine._trim_heap()  # the real lookup: glibc here, or nothing
    assert engine._malloc_trim is not None
