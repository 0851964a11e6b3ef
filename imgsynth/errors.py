"""One family of typed errors for the whole library.

Library code raises these with an actionable one-line message; the CLI turns them into
``error: ...`` on stderr and exit code 1. Nothing here imports torch.
"""

from __future__ import annotations


class ImgsynthError(Exception):
    """Base class of every error imgsynth raises on purpose."""

    exit_code = 1


class UsageError(ImgsynthError):
    """The request itself is wrong (bad option combination); exit code 2 like Click's."""

    exit_code = 2


class InputError(ImgsynthError):
    """An input file (image, mask, label map) cannot be used."""


class OutputError(ImgsynthError):
    """An output cannot be written (not writable, would overwrite an input, ...)."""


class UnknownModelError(ImgsynthError):
    """A model or card id that does not exist: a usage error (exit code 2), like any unknown name."""

    exit_code = 2


class CardError(ImgsynthError):
    """A weight card is malformed."""


class WeightsError(ImgsynthError):
    """Weights cannot be fetched, verified or loaded."""


class DeviceError(ImgsynthError):
    """A device or precision that this machine cannot provide."""


class PrecisionError(DeviceError, UsageError):
    """A precision the device has no native kernels for (e.g. bf16 on a CPU without AVX512-BF16/AMX).

    A usage error (exit code 2): the request cannot be served well here and another precision can.
    """

    exit_code = 2


class ConfigError(ImgsynthError):
    """A training recipe or override is invalid."""
