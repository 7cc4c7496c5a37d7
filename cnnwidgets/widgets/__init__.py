"""Thin anywidget classes: traits and glue over the backend and methods."""

from .activation_maximization import ActivationMaximization
from .adversarial_explorer import AdversarialExplorer
from .attribute_slices import AttributeSlices
from .code_inversion import CodeInversion
from .confusion_view import ConfusionView
from .correspondence_explorer import CorrespondenceExplorer
from .embedding_scatter import EmbeddingScatter
from .feature_evolution import FeatureEvolution
from .human_vs_network import HumanVsNetwork
from .invariance_probe import InvarianceProbe
from .layer_explorer import LayerExplorer
from .network_map import NetworkMap
from .occlusion_slider import OcclusionSlider
from .saliency_overlay import SaliencyOverlay
from .top_activations import TopActivations

__all__ = [
    "ConfusionView",
    "ActivationMaximization", "AdversarialExplorer", "CodeInversion", "CorrespondenceExplorer", "EmbeddingScatter",
    "FeatureEvolution", "InvarianceProbe", "LayerExplorer", "NetworkMap", "OcclusionSlider", "SaliencyOverlay",
    "TopActivations",
]
__all__ += ["AttributeSlices", "HumanVsNetwork"]
