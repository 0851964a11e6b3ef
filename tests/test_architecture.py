"""Package structure: imports only flow layers -> models -> convert -> pipelines -> engine -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "imgsynth"
ORDER = ["layers", "models", "convert", "pipelines", "engine", "training", "cli"]
# training sits beside engine: it may use everything below engine and the engine's I/O helpers
ALLOWED = {
    "layers": {"layers"},
    "models": {"layers", "models"},
    "convert": {"layers", "models", "convert"},
    "pipelines": {"layers", "models", "convert", "pipelines"},
    "engine": {"layers", "models", "convert", "pipelines", "engine"},
    "training": {"layers", "models", "convert", "pipelines", "engine", "training"},
    "cli": set(ORDER) | {"serve"},
    # serve (the web page's server) sits beside cli: everything below it, no training, no typer/rich
    "serve": {"layers", "models", "convert", "pipelines", "engine", "serve"},
}
NEUTRAL = {"errors", "__init__", "__main__"}
UI_LIBS = {"typer", "rich", "click"}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


FILES = sorted(p for p in PKG.rglob("*.py") if p.parent != PKG)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_import_direction(path: Path):
    layer = path.relative_to(PKG).parts[0]
    for mod, line in _imports(path):
        parts = mod.split(".")
        if parts[0] in UI_LIBS:
            assert layer == "cli", f"{path.name}:{line} imports {mod}: only imgsynth.cli may use typer/rich"
        if parts[0] != "imgsynth" or len(parts) < 2 or parts[1] in NEUTRAL:
            continue
        assert parts[1] in ALLOWED[layer], f"{path.relative_to(PKG)}:{line} imports {mod} (wrong-way edge)"
