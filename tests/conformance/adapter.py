"""Adapter between ``../shared/conformance/check.py`` and imgsynth's public loading API.

    PYTHONPATH=tests/conformance python ../shared/conformance/check.py --impl adapter:load [--data DIR]

``load(model_name, state_dict)`` never looks at the model name itself: it reads the model's
manifest (``check.manifest(name)``, i.e. the folder given to ``--data``) and builds from its
``family``, ``class`` and ``options``, or, with no manifest, from the state-dict keys and shapes.
So another configuration of a known architecture (other widths, depths, options) loads without
editing anything here.

Builders are data: each ``cases_<area>.py`` beside this file defines ``BUILDERS``, a dict from a
manifest ``family`` to ``fn(state_dict, manifest) -> torch.nn.Module`` that only calls the
package's public API (``infer_config`` with the options the weights cannot tell, a converter,
``build_model``, ``load_state_dict(strict=True)``), plus a thin call-convention wrapper where
the official forward signature differs. A module may also define ``DETECT``: ``fn(state_dict)
-> family | None``, used when there is no manifest. To support a new family, add a
``cases_<area>.py`` with its ``BUILDERS`` (and ``DETECT``); nothing else changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

SHARED = HERE.parents[1].parent / "shared" / "conformance"  # ../shared beside the repository

Builder = Callable[[dict, dict], Any]


def _collect() -> tuple[dict[str, Builder], list[Callable[[dict], str | None]]]:
    builders: dict[str, Builder] = {}
    detectors: list[Callable[[dict], str | None]] = []
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if info.name.startswith("cases_"):
            mod = importlib.import_module(info.name)
            overlap = set(builders) & set(getattr(mod, "BUILDERS", {}))
            if overlap:
                raise RuntimeError(f"{info.name} redefines the builder(s) of {sorted(overlap)}")
            builders.update(getattr(mod, "BUILDERS", {}))
            if hasattr(mod, "DETECT"):
                detectors.append(mod.DETECT)
    return builders, detectors


BUILDERS, DETECTORS = _collect()


def _check_module() -> Any | None:
    """check.py itself: the running script, else the copy in ``../shared/conformance``."""
    main = sys.modules.get("__main__")
    if main is not None and callable(getattr(main, "manifest", None)) and hasattr(main, "check_model"):
        return main
    if "conformance_check" in sys.modules:
        return sys.modules["conformance_check"]
    path = SHARED / "check.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("conformance_check", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["conformance_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def manifest(model_name: str) -> dict | None:
    """The manifest ``check.py`` would use for ``model_name`` (``--data`` folder), or None."""
    check = _check_module()
    try:
        if check is not None:
            return check.manifest(model_name)
        data = os.environ.get("CONFORMANCE_DATA")
        if data:
            return json.loads((Path(data) / f"{model_name}.manifest.json").read_text())
    except FileNotFoundError:
        return None
    return None


def detect_family(state_dict: dict) -> str:
    """The family of an official state dict, from its keys alone."""
    for detect in DETECTORS:
        family = detect(state_dict)
        if family is not None:
            return family
    raise KeyError(f"no imgsynth builder recognises a state dict with keys like {sorted(state_dict)[:3]}")


def build(state_dict: dict, man: dict | None = None) -> Any:
    """A module from an official state dict and (optionally) its manifest."""
    man = dict(man or {})
    family = man.get("family") or detect_family(state_dict)
    try:
        builder = BUILDERS[family]
    except KeyError:
        raise KeyError(f"no imgsynth builder for family {family!r} (known: {', '.join(sorted(BUILDERS))})") from None
    return builder(state_dict, man)


def supports(man: dict) -> bool:
    """Whether a manifest's family has a builder here."""
    return man.get("family") in BUILDERS


def load(model_name: str, state_dict: dict) -> Any:
    """check.py hook: a module for ``model_name`` built from the official ``state_dict``."""
    return build(state_dict, manifest(model_name))
