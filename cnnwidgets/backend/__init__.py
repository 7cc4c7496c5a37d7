"""The shared inference backend: model wrapper, preprocessing, hooks, caching, batching."""

from .inspector import Inspector, as_inspector
from .layers import LayerInfo
from .preprocess import Preprocess

__all__ = ["Inspector", "as_inspector", "LayerInfo", "Preprocess"]
