"""Parity with the official implementations, through ../shared/conformance/check.py.

Runs every recorded case of every conformance model whose manifest ``family`` has a builder in
the adapter (so a new configuration of a known architecture is checked without any edit here).
Where ``../shared`` is absent (a user's clone) the tests skip with a reason; under ``CI=true``
they must run.
"""

from __future__ import annotations

import os

import pytest

import adapter  # tests/conformance is on sys.path via conftest

pytestmark = pytest.mark.conformance

SHARED = adapter.SHARED
CHECK = SHARED / "check.py"


def _check_module():
    if not CHECK.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHECK} is missing: conformance must run in CI")
        pytest.skip(f"{SHARED} not found (conformance data lives beside the repo, not in it)")
    return adapter._check_module()


def _models() -> list[str]:
    if not CHECK.exists():
        return ["<no conformance data>"]
    check = adapter._check_module()
    return [m for m in check.available() if adapter.supports(check.manifest(m))]


@pytest.mark.parametrize("model_name", _models())
def test_official_parity(model_name: str) -> None:
    check = _check_module()
    results, keys = check.check_model(model_name, adapter.load, verbose=False)
    assert results, f"no cases recorded for {model_name}"
    failed = [r for r in results if not r["pass"]]
    assert not failed, "\n".join(
        f"{r['case']}: {r.get('exception') or r['outputs']}" for r in failed
    )


def test_adapter_builds_from_shapes_without_a_manifest() -> None:
    """With no manifest, every image family is recognised from the keys alone and loads strictly."""
    check = _check_module()
    from safetensors.torch import load_file

    data = os.environ.get("CONFORMANCE_DATA") or check.DATA
    shape_only = {"dcgan_examples", "pgan_celebahq256", "pix2pix_unet256_facades", "cyclegan_resnet9_horse2zebra",
                  "pix2pixhd_global_512p", "pix2pixhd_local_1024p", "pconv_unet_places2", "stylegan2ada_tiny"}
    for name in sorted(shape_only & set(check.available())):
        sd = load_file(os.path.join(data, name + ".weights.safetensors"))
        man = check.manifest(name)
        module = adapter.build(dict(sd))
        assert adapter.detect_family(sd) == man["family"], name
        assert sum(p.numel() for p in module.parameters()) > 0


def test_adapter_reads_the_data_folder(tmp_path, monkeypatch) -> None:
    """A manifest in the folder given to --data (CONFORMANCE_DATA) is the one used: an edited option shows."""
    import json

    check = _check_module()
    name = "pix2pixhd_global_512p"
    if name not in check.available():
        pytest.skip(f"{name} not in the conformance data")
    from safetensors.torch import load_file

    sd = load_file(os.path.join(check.DATA, name + ".weights.safetensors"))
    assert adapter.load(name, dict(sd)) is not None
    man = check.manifest(name)
    man["options"]["no_instance"] = True  # 36 channels would then all be labels: label_nc mismatch
    (tmp_path / f"{name}.manifest.json").write_text(json.dumps(man))
    monkeypatch.setenv("CONFORMANCE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="label_nc"):
        adapter.load(name, dict(sd))
