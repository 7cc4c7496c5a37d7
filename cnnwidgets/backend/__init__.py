"""The shared inference backend: model wrapper, preprocessing, hooks, caching, batching."""

from .inspector import Inspector
from .layers import LayerInfo
from .preprocess import Preprocess

__all__ = ["Inspector", "LayerInfo", "Preprocess"]
