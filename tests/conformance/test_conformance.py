"""Parity with the official implementations, through ../shared/conformance/check.py.

Runs every recorded case of every conformance model that has an imgsynth loader. Where
``../shared`` is absent (a user's clone) the tests skip with a reason; under ``CI=true`` they must run.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.conformance

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
CHECK = SHARED / "check.py"


def _check_module():
    if not CHECK.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHECK} is missing: conformance must run in CI")
        pytest.skip(f"{SHARED} not found (conformance data lives beside the repo, not in it)")
    spec = importlib.util.spec_from_file_location("conformance_check", CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _models() -> list[str]:
    import adapter  # noqa: PLC0415  (tests/conformance is on sys.path via conftest)

    return sorted(adapter.LOADERS)


@pytest.mark.parametrize("model_name", _models())
def test_official_parity(model_name: str) -> None:
    import adapter

    check = _check_module()
    if model_name not in check.available():
        pytest.fail(f"conformance data for {model_name} missing from {SHARED}")
    results, keys = check.check_model(model_name, adapter.load, verbose=False)
    assert results, f"no cases recorded for {model_name}"
    failed = [r for r in results if not r["pass"]]
    assert not failed, "\n".join(
        f"{r['case']}: {r.get('exception') or r['outputs']}" for r in failed
    )
