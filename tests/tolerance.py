"""Float comparisons relative to the magnitude of the reference, as ../shared/conformance/check.py does.

``max|actual - expected| <= tol * max(1, max|expected|)``: one bound for the whole tensor, scaled by
the reference's largest value, instead of an element-wise ``atol + rtol*|expected|`` that fails on
whichever element happens to sit near zero when another CPU (other SIMD width, other conv
algorithm) sums in another order. Non-float tensors must be equal.

Tolerances: ``LAYER`` (1e-5) for one layer or op, ``NETWORK`` (1e-4, check.py's float32 default)
for a whole network run against a replica in another operation order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LAYER = 1e-5
NETWORK = 1e-4


def _as_numpy(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            return x.numpy() if x.dtype != torch.bfloat16 else x.float().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)


def max_error(actual: Any, expected: Any) -> tuple[float, float]:
    """(max |actual - expected|, the allowed scale max(1, max|expected|))."""
    a, e = _as_numpy(actual).astype(np.float64), _as_numpy(expected).astype(np.float64)
    err = float(np.abs(a - e).max()) if a.size else 0.0
    scale = max(1.0, float(np.abs(e).max())) if e.size else 1.0
    return err, scale


def assert_close(actual: Any, expected: Any, tol: float | None = None, *, atol: float | None = None,
                 rtol: float | None = None, msg: str | None = None) -> None:
    """Assert ``actual`` matches ``expected`` within ``tol`` of the reference magnitude.

    ``atol``/``rtol`` are accepted for familiarity and folded into one relative ``tol`` (their max);
    default ``LAYER``. Shapes must match; integer and bool tensors must be equal.
    """
    a, e = _as_numpy(actual), _as_numpy(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}" + (f" ({msg})" if msg else "")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(e.dtype, np.floating)):
        assert np.array_equal(a, e), msg or "integer tensors differ"
        return
    tol = tol if tol is not None else max(atol or 0.0, rtol or 0.0) or LAYER
    assert np.isfinite(a).all() == np.isfinite(e).all(), msg or "non-finite values differ"
    err, scale = max_error(a, e)
    assert err <= tol * scale, (
        f"max |actual - expected| = {err:.3e} > {tol:.1e} * {scale:.3g}" + (f" ({msg})" if msg else "")
    )
