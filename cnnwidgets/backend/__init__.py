"""The shared inference backend: model wrapper, preprocessing, hooks, caching, batching."""

from .index import Index, build_index
from .inspector import Inspector
from .layers import LayerInfo
from .preprocess import Preprocess

__all__ = ["Index", "Inspector", "LayerInfo", "Preprocess", "build_index"]
