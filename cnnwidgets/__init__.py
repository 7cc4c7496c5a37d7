"""cnnwidgets: live Jupyter widgets that show what a convolutional network sees."""

from . import methods, zoo
from .backend import Index, Inspector, LayerInfo, Preprocess
from .errors import InputError, LayerNotFoundError
from .widgets import (
    ActivationMaximization, AdversarialExplorer, CodeInversion, EmbeddingScatter, FeatureEvolution, InvarianceProbe,
    LayerExplorer, OcclusionSlider, SaliencyOverlay, TopActivations,
)

__all__ = [
    "ActivationMaximization", "AdversarialExplorer", "CodeInversion", "EmbeddingScatter", "FeatureEvolution", "Index",
    "Inspector", "InputError", "InvarianceProbe", "LayerExplorer", "LayerInfo", "LayerNotFoundError", "OcclusionSlider", "Preprocess",
    "SaliencyOverlay", "TopActivations", "methods", "zoo",
]
__version__ = "0.1.0"
