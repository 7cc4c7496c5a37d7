"""Class activation maps: Grad-CAM, Guided Grad-CAM, Grad-CAM++, Score-CAM, Layer-CAM.

Each takes `(inspector, image, target=None, layer=None, **options)` and returns an [H,W] map at the input's
resolution (on the CPU, rectified, not normalized); `layer` is a layer name from `inspector.layer_names`, by
default the last convolutional block (`default_cam_layer`). Guided Grad-CAM returns [C,H,W] like the gradient
methods.

Gradient CAMs keep one forward graph per (image, layer) from the layer to the class scores, so another class
costs one backward through the head only. Score-CAM reuses the cached activations of the layer and keeps the
scores of every class for every channel mask, so switching class costs nothing.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..backend.device import batch_size_for, batches
from ..backend.gradients import layer_forward
from ..backend.hooks import eval_mode
from ..backend.images import ImageLike
from ..backend.inspector import Inspector, class_scores
from ..backend.layers import LayerInfo
from ..errors import InputError, LayerNotFoundError, model_errors
from .gradients import guided_backprop, target_tensor

CAM_KINDS = ("conv", "activation", "block")
SCORE_CAM_CPU_BATCH = 2
"""Masked inputs per forward on a CPU. Measured on a 2-core CPU, EfficientNet-Lite0's 320-channel `_blocks.15`:
batches of 2 take 3.1 s, of 1 or 4 take 3.6 s."""
SCORE_CAM_EPS = 1e-8
"""Score-CAM's masks are (A − min) / (max − min + eps), as in pytorch-grad-cam."""


def default_cam_layer(inspector: Inspector) -> str:
    """The layer whose map covers every channel of the model's final feature map.

    The final feature map is the last spatial map to be finished by a convolution, an activation, a block or a
    norm (pools are skipped: an adaptive pool's 6×6 copy is no feature map); blocks finish after their insides, so
    a concatenation counts whole: Inception v3's 2048-channel `Mixed_7c`, not its 192-channel last branch;
    GoogLeNet's `inception5b`; ResNet's `layer4`; Swin's final `norm`. The outermost layer finishing with that
    same map is chosen. A model whose head reads a class token (ViT) gets no gradient at the other tokens after its
    last attention, so there the map entering the last transformer block is used (its first layer, `norm1` in
    timm, pytorch-grad-cam's choice)."""
    layers = inspector.layers
    candidates = [layer for layer in layers if _spatial(layer) and _feature_map(inspector, layer)]
    if not candidates:
        raise InputError("this model has no layer with a spatial output; CAM methods need a conv layer's [C,H,W] map")
    final = max(candidates, key=lambda layer: layer.ended)
    if final.layout.kind == "tokens" and final.layout.prefix > 0:
        return _last_block_input(candidates, final).name
    by_name = {layer.name: layer for layer in layers}
    chosen = final
    parts = final.module_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        parent = by_name.get(".".join(parts[:end]))
        if parent is None or parent.shape != final.shape:
            break
        chosen = parent
    return chosen.name


def cam_layers(inspector: Inspector) -> list[LayerInfo]:
    """The layers a CAM can weight: convs, activations and blocks with a spatial [C,H,W] output, in forward order."""
    return [layer for layer in inspector.layers if layer.kind in CAM_KINDS and _spatial(layer)]


def _feature_map(inspector: Inspector, layer: LayerInfo) -> bool:
    """Convolutions, activations, blocks, and norms (modules with weights of their own), not pools or reshapes."""
    if layer.kind in CAM_KINDS:
        return True
    return layer.kind == "other" and any(True for _ in inspector.model.get_submodule(layer.module_name).parameters())


def _last_block_input(candidates: list[LayerInfo], final: LayerInfo) -> LayerInfo:
    """The first layer inside the last numbered block (`blocks.11` → `blocks.11.norm1`) before `final`."""
    blocks = [layer for layer in candidates if layer.kind == "block" and re.search(r"\d+$", layer.module_name)
              and layer.ended < final.ended and layer.layout.kind == "tokens"]
    if not blocks:
        return final
    block = blocks[-1]
    inside = [layer for layer in candidates if layer.module_name.startswith(block.module_name + ".")]
    return inside[0] if inside else block


def _spatial(layer: LayerInfo) -> bool:
    return len(layer.shape) == 3 and layer.shape[1] * layer.shape[2] > 1


def cam_layer(inspector: Inspector, layer: str | None) -> LayerInfo:
    """The LayerInfo for a CAM: the default when None; an error for unknown or non-spatial layers."""
    if layer is None:
        return inspector.layer(default_cam_layer(inspector))
    try:
        info = inspector.layer(layer)
    except LayerNotFoundError:
        if layer in dict(inspector.model.named_modules()):
            raise InputError(
                f"layer {layer!r} has no spatial output; CAM methods need a [C,H,W] map, e.g. {default_cam_layer(inspector)!r}"
            ) from None
        raise
    if not _spatial(info):
        raise InputError(
            f"layer {info.name!r} outputs {'×'.join(map(str, info.shape))}, no spatial map to weight; "
            f"pick an earlier layer such as {default_cam_layer(inspector)!r}"
        )
    return info


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An [h,w] map resized bilinearly (pixel centers aligned, like OpenCV's resize) to `size`."""
    return F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def _gradient_cam(inspector: Inspector, image: ImageLike, target, layer: str | None, weigh) -> torch.Tensor:
    batch = inspector.preprocess(image)
    info = cam_layer(inspector, layer)
    forward = layer_forward(inspector, batch, info.name)
    grads, _ = forward.gradient(target_tensor(inspector, target))
    activation = forward.activation.detach()
    cam = weigh(activation[0], grads[0]).clamp(min=0)
    return upsample(cam, (batch.shape[-2], batch.shape[-1])).cpu()


def _grad_cam_map(activation: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    weights = grads.mean((1, 2))
    return torch.einsum("c,chw->hw", weights, activation)


def _grad_cam_pp_map(activation: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    # Chattopadhay et al. 2018 with the exponential-score simplification used by pytorch-grad-cam:
    # alpha = g² / (2 g² + Σ_ij A · g³), weights = Σ_ij alpha · relu(g)
    grads2 = grads.pow(2)
    grads3 = grads2 * grads
    sums = activation.sum((1, 2), keepdim=True)
    alpha = grads2 / (2 * grads2 + sums * grads3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp(min=0)).sum((1, 2))
    return torch.einsum("c,chw->hw", weights, activation)


def _layer_cam_map(activation: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return (grads.clamp(min=0) * activation).sum(0)


def grad_cam(inspector: Inspector, image: ImageLike, target: int | str | None = None, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017), [H,W]: relu(Σ_c mean(∂score/∂A_c) · A_c), upsampled to the input.

    One forward (without a graph up to the layer) and one backward through the head; later classes on the
    same image and layer reuse the forward.
    """
    return _gradient_cam(inspector, image, target, layer, _grad_cam_map)


def grad_cam_plus_plus(inspector: Inspector, image: ImageLike, target: int | str | None = None, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), [H,W]: pixel-weighted positive gradients as channel weights."""
    return _gradient_cam(inspector, image, target, layer, _grad_cam_pp_map)


def layer_cam(inspector: Inspector, image: ImageLike, target: int | str | None = None, layer: str | None = None) -> torch.Tensor:
    """Layer-CAM (Jiang et al. 2021), [H,W]: relu(Σ_c relu(∂score/∂A_c) ⊙ A_c), weighting every position."""
    return _gradient_cam(inspector, image, target, layer, _layer_cam_map)


def guided_grad_cam(inspector: Inspector, image: ImageLike, target: int | str | None = None, layer: str | None = None) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017), [C,H,W]: guided backprop times the upsampled Grad-CAM map."""
    return guided_backprop(inspector, image, target) * grad_cam(inspector, image, target, layer)


def score_cam_scores(inspector: Inspector, image: ImageLike, layer: str | None = None, *, batch_size: int | None = None,
                     progress: bool = True) -> torch.Tensor:
    """Score-CAM's class scores [channels, classes]: the model's logits for the input masked by each channel.

    Each channel's map is upsampled to the input (bilinear, corners aligned), scaled to [0, 1] and multiplied
    into the input, as pytorch-grad-cam does. The layer's activations come from the inspector's cache (no new
    forward when the layer was seen); channels whose map is constant give the all-zero mask, scored once.
    The result is kept in the inspector's memo per (image, layer) while the weights stay the same.
    """
    batch = inspector.preprocess(image)
    info = cam_layer(inspector, layer)
    return inspector.memo(("score cam", info.name), lambda: _score_cam_scores(inspector, batch, info, batch_size, progress), image=batch)


def _score_cam_scores(inspector: Inspector, batch: torch.Tensor, info: LayerInfo, batch_size: int | None, progress: bool) -> torch.Tensor:
    activation = inspector.activations(batch, info.name).to(batch.device)  # [C,h,w], cached forward
    channels = len(activation)
    flat = activation.flatten(1)
    constant = flat.amax(1) == flat.amin(1)
    varying = (~constant).nonzero().flatten()
    size = batch_size or (SCORE_CAM_CPU_BATCH if inspector.device.type == "cpu" else batch_size_for(inspector.device))
    scores = None
    with eval_mode(inspector.model), torch.inference_mode(), model_errors(tuple(batch.shape)):
        model = inspector.scoring_model(batch, images=len(varying))
        if bool(constant.any()):
            zero_scores = class_scores(model(torch.zeros_like(batch)))[0]
            scores = zero_scores.expand(channels, -1).clone()
        for part in tqdm(batches(len(varying), size), desc="Score-CAM", leave=False, disable=not progress):
            picked = varying[part]
            maps = F.interpolate(activation[picked][None], size=batch.shape[-2:], mode="bilinear", align_corners=True)[0]
            low = maps.flatten(1).amin(1).view(-1, 1, 1)
            high = maps.flatten(1).amax(1).view(-1, 1, 1)
            masks = (maps - low) / (high - low + SCORE_CAM_EPS)
            logits = class_scores(model(batch * masks[:, None]))
            if scores is None:
                scores = torch.empty((channels, logits.shape[1]), dtype=logits.dtype, device=logits.device)
            scores[picked] = logits
    assert scores is not None  # every channel is constant or varying, and a layer has at least one
    return scores.float().cpu()


def score_cam(inspector: Inspector, image: ImageLike, target: int | str | None = None, layer: str | None = None, *,
              batch_size: int | None = None, progress: bool = True) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020), [H,W]: relu(Σ_c softmax_c(score of the input masked by A_c) · A_c).

    The masked inputs run in batches (`batch_size`, default fast for the device) on the inspector's scoring copy
    (batch norms folded, channels-last) with a progress bar; the scores of all classes are kept, so another class
    on the same image and layer is free.
    """
    batch = inspector.preprocess(image)
    info = cam_layer(inspector, layer)
    scores = score_cam_scores(inspector, batch, info.name, batch_size=batch_size, progress=progress)
    index = inspector.class_index(target) if target is not None else int(inspector.logits(batch).argmax())
    if index >= scores.shape[1]:
        raise InputError(f"class index {index} is out of range; pick 0..{scores.shape[1] - 1}")
    weights = scores[:, index].softmax(0)
    activation = inspector.activations(batch, info.name)
    cam = torch.einsum("c,chw->hw", weights, activation.float()).clamp(min=0)
    return upsample(cam, (batch.shape[-2], batch.shape[-1]))
