"""Pure functions over tensors and an Inspector; no widget code."""

from .activations import channel_stats, dead_channels, dead_on_all, scale_maps
from .filters import filter_images

__all__ = ["channel_stats", "dead_channels", "dead_on_all", "filter_images", "scale_maps"]
