"""Pure functions over tensors and an Inspector; no widget code."""

from ..backend.receptive_field import ReceptiveField, gradient_receptive_field, receptive_field, receptive_fields
from .activations import channel_stats, dead_channels, dead_on_all, scale_maps
from .adversarial import fgsm, fooling_image, pgd
from .attributes import attribute_slices, image_attributes
from .cam import default_cam_layer, grad_cam, grad_cam_plus_plus, guided_grad_cam, layer_cam, score_cam
from .correspondence import correspondence, keypoint_transfer
from .deconv import deconv_projection, deconv_projections
from .embed import grid_layout
from .faithfulness import deletion_insertion, sanity_check
from .filters import filter_images
from .gradients import deconvnet, guided_backprop, integrated_gradients, saliency, smoothgrad
from .human_vs_network import score_answers, shortlist
from .invariance import invariance_curves
from .invert import invert, invert_layers
from .maximize import maximize
from .network_graph import NetworkGraph, network_graph
from .occlusion import attribution_map, occluded_logits, occlusion, occlusion_progressive
from .reduce import display_map, reduce_map
from .video import class_evidence, clip_saliency, grad_cam_3d, maximize_clip, tube_occlusion

__all__ = [
    "ReceptiveField", "channel_stats", "dead_channels", "dead_on_all", "deconv_projection", "deconv_projections",
    "deconvnet", "default_cam_layer", "deletion_insertion", "display_map", "fgsm", "filter_images", "fooling_image",
    "grad_cam", "grad_cam_plus_plus", "gradient_receptive_field", "grid_layout", "guided_backprop", "guided_grad_cam", "integrated_gradients",
    "invariance_curves", "invert", "invert_layers", "layer_cam", "maximize", "pgd",
    "attribution_map", "occluded_logits", "occlusion", "occlusion_progressive", "receptive_field",
    "receptive_fields", "reduce_map", "saliency", "sanity_check", "scale_maps", "score_cam", "smoothgrad",
    "class_evidence", "clip_saliency", "grad_cam_3d", "maximize_clip", "tube_occlusion",
    "NetworkGraph", "network_graph", "correspondence", "keypoint_transfer",
    "attribute_slices", "image_attributes", "score_answers", "shortlist",
]
