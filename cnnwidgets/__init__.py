"""cnnwidgets: live Jupyter widgets that show what a convolutional network sees."""

from . import methods, zoo
from .backend import Index, Inspector, LayerInfo, Preprocess
from .errors import InputError, LayerNotFoundError
from .widgets import (
    ActivationMaximization,
    AdversarialExplorer,
    AttributeSlices,
    CodeInversion,
    ConfusionView,
    CorrespondenceExplorer,
    EmbeddingScatter,
    FeatureEvolution,
    HumanVsNetwork,
    InvarianceProbe,
    LayerExplorer,
    NetworkMap,
    OcclusionSlider,
    SaliencyOverlay,
    TopActivations,
)

__all__ = [
    "ConfusionView",
    "ActivationMaximization", "AdversarialExplorer", "CodeInversion", "CorrespondenceExplorer", "EmbeddingScatter",
    "FeatureEvolution", "Index", "Inspector", "InputError", "InvarianceProbe", "LayerExplorer", "LayerInfo",
    "LayerNotFoundError", "NetworkMap", "OcclusionSlider", "Preprocess", "SaliencyOverlay", "TopActivations", "methods",
    "zoo",
]
__all__ += ["AttributeSlices", "HumanVsNetwork"]
__version__ = "0.1.0"
