"""Seed lists and grid shapes from the command line, parsed without torch (usage errors come fast).

A range is checked before it is expanded: ``--seeds 0-99999999999`` is refused at once instead of
building a list of 10^11 integers.
"""

from __future__ import annotations

import re

from imgsynth.errors import UsageError

SEED_LIMIT = 2**32
MAX_SEEDS = 1_000_000  # images in one run; more is a mistake or a job for several runs


def parse_seeds(text: str, *, what: str = "seed") -> list[int]:
    """``"0,1,4-6"`` -> ``[0, 1, 4, 5, 6]``."""
    parts = [p.strip() for p in str(text).split(",")]
    spans: list[tuple[int, int]] = []
    for part in parts:
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise UsageError(f"{what} range {part!r} runs backwards")
        elif part.isdigit():
            a = b = int(part)
        else:
            raise UsageError(f"bad {what} {part!r}: use numbers and ranges like 0,1,4-6")
        if b >= SEED_LIMIT:
            raise UsageError(f"{what}s must be below 2**32 ({part!r})")
        spans.append((a, b))
    if not spans:
        raise UsageError(f"no {what}s given")
    total = sum(b - a + 1 for a, b in spans)
    if total > MAX_SEEDS:
        raise UsageError(f"{total:,} {what}s in one run is more than {MAX_SEEDS:,}; split the range")
    return [s for a, b in spans for s in range(a, b + 1)]


def parse_grid(text: str) -> tuple[int, int]:
    """``"4x3"`` -> ``(4, 3)`` (rows, columns)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise UsageError(f"--grid {text!r}: use ROWSxCOLS, e.g. 4x4")
    rows, cols = int(m.group(1)), int(m.group(2))
    if rows * cols > MAX_SEEDS:
        raise UsageError(f"--grid {text!r}: {rows * cols:,} cells is more than {MAX_SEEDS:,}")
    return rows, cols
