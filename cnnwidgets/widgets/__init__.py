"""Thin anywidget classes: traits and glue over the backend and methods."""

from .layer_explorer import LayerExplorer

__all__ = ["LayerExplorer"]
