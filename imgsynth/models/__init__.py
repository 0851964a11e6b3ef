"""Whole networks, one paper per file, registered by architecture name.

Use :func:`get_model`, :func:`build_model` and :func:`list_models`; every module in this package
(except ``registry``) is imported on first use so that its ``@register_model`` decorators run.
"""

from imgsynth.models.registry import ModelSpec, build_model, get_model, list_models, register_model

__all__ = ["ModelSpec", "build_model", "get_model", "list_models", "register_model"]
