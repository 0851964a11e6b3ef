"""imgsynth: deep-learning image synthesis and editing.

The package is layered (``layers -> models -> convert -> pipelines -> engine -> cli``); importing
``imgsynth`` itself is cheap and does not import torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
