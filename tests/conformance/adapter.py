"""Adapter between ``../shared/conformance/check.py`` and imgsynth's public loading API.

    PYTHONPATH=tests/conformance python ../shared/conformance/check.py --impl adapter:load

Each ``cases_<family>.py`` beside this file defines ``LOADERS``: a dict from conformance model
name to ``fn(official_state_dict) -> torch.nn.Module``. Those functions only map a case name to
imgsynth's converters and constructors (plus a thin call-convention wrapper where the official
forward signature differs); all real work lives in the package.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _collect() -> dict:
    loaders: dict = {}
    for info in pkgutil.iter_modules([str(HERE)]):
        if info.name.startswith("cases_"):
            mod = importlib.import_module(info.name)
            overlap = set(loaders) & set(mod.LOADERS)
            if overlap:
                raise RuntimeError(f"{info.name} redefines {sorted(overlap)}")
            loaders.update(mod.LOADERS)
    return loaders


LOADERS = _collect()


def load(model_name: str, state_dict: dict):
    """check.py hook: a module for ``model_name`` built from the official ``state_dict``."""
    try:
        fn = LOADERS[model_name]
    except KeyError:
        raise KeyError(f"no imgsynth loader for conformance model {model_name!r}") from None
    return fn(state_dict)
