"""What changes in a network between training checkpoints: dead channels, sparsity, weight change, and each
chosen feature's strongest dataset image with its deconvnet projection (Zeiler & Fergus 2014, Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backend import Inspector
from ..backend.hooks import capture_outputs, eval_mode
from ..backend.preprocess import display_batch
from ..backend.receptive_field import receptive_fields
from ..errors import model_errors
from .activations import dead_channels
from .deconv import deconv_projections, projection_picture

SCORES = "__scores__"


def layer_health(activations: torch.Tensor) -> tuple[float, float]:
    """(fraction of channels dead on every image, fraction of zero activations) of an [N,C,H,W] batch's maps."""
    dead = dead_channels(activations.transpose(0, 1))
    return float(dead.float().mean()), float((activations == 0).float().mean())


def weight_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], modules: Sequence[str]) -> dict[str, float]:
    """Relative change ‖W_after − W_before‖ / ‖W_before‖ of each named module's weight between two state dicts."""
    change = {}
    for name in modules:
        old, new = before[f"{name}.weight"].float(), after[f"{name}.weight"].float()
        change[name] = float((new - old).norm() / old.norm().clamp_min(1e-12))
    return change


def strongest(activations: torch.Tensor, channel: int) -> tuple[int, float, tuple[int, int]]:
    """(image index, value, (row, col)) of the largest activation of `channel` over an [N,C,H,W] batch; ties go to
    the lower image index."""
    maps = activations[:, channel].flatten(1)
    values, positions = maps.max(1)
    image = int(values.argmax())
    row, col = divmod(int(positions[image]), activations.shape[3])
    return image, float(values[image]), (row, col)


def evolution_panels(
    inspector: Inspector,
    batch: torch.Tensor,
    features: Sequence[tuple[str, int]],
    layers: Sequence[str],
    targets: torch.Tensor | None = None,
    tile: int = 48,
    fields: dict | None = None,
) -> dict:
    """Everything FeatureEvolution shows for the model's current weights, from one forward pass over `batch`.

    Returns tensors: `tiles` [F, 2, tile, tile, 3] uint8 (each feature's strongest image and its deconvnet
    projection, cropped to the unit's receptive field), `values` [F], `images` [F] (indices into `batch`),
    `dead_fraction` and `sparsity` per layer, and `accuracy` when `targets` are given. `fields` are the
    model's receptive fields (`receptive_fields`), traced here when not given.
    """
    model = inspector.model
    names = sorted(set(layers) | {layer for layer, _ in features})
    infos = {name: inspector.layer(name) for name in names}
    wanted: dict[str, tuple] = {name: (model.get_submodule(info.module_name), info.call, info.to_map)
                                for name, info in infos.items()}
    wanted[SCORES] = (model, 0)
    with eval_mode(model), torch.inference_mode(), model_errors(tuple(batch.shape)):
        captured = capture_outputs(model, wanted, batch.to(inspector.device))
    health = {name: layer_health(captured[name]) for name in layers}
    panels: dict = {
        "dead_fraction": {name: dead for name, (dead, _) in health.items()},
        "sparsity": {name: sparse for name, (_, sparse) in health.items()},
        "accuracy": None if targets is None else float((captured[SCORES].argmax(1).cpu() == targets).float().mean()),
    }
    picks = [strongest(captured[layer], channel) for layer, channel in features]
    fields = fields if fields is not None else receptive_fields(model, tuple(batch[:1].shape))
    pictures = display_batch(batch[[image for image, _, _ in picks]], inspector.transform)
    projections = _projections(inspector, batch, features, picks)
    tiles = []
    for index, ((layer, _), (_, _, position)) in enumerate(zip(features, picks)):
        box = _crop_box(fields.get(layer), position, batch.shape[2:])
        tiles.append(torch.stack([_tile(pictures[index], box, tile), _tile(projection_picture(projections[index]), box, tile)]))
    panels["tiles"] = torch.stack(tiles) if tiles else torch.zeros((0, 2, tile, tile, 3), dtype=torch.uint8)
    panels["values"] = torch.tensor([value for _, value, _ in picks])
    panels["images"] = torch.tensor([image for image, _, _ in picks])
    return panels


def _projections(inspector: Inspector, batch: torch.Tensor, features: Sequence[tuple[str, int]], picks: list) -> list[torch.Tensor]:
    """The deconvnet projection of each feature's strongest unit, one batched backward pass per layer."""
    projections: dict[int, torch.Tensor] = {}
    for layer in dict.fromkeys(layer for layer, _ in features):
        rows = [i for i, (name, _) in enumerate(features) if name == layer]
        images = torch.tensor([picks[i][0] for i in rows])
        channels = torch.tensor([features[i][1] for i in rows])
        positions = torch.tensor([picks[i][2] for i in rows])
        for row, projection in zip(rows, deconv_projections(inspector, batch[images], layer, channels, positions)):
            projections[row] = projection
    return [projections[row] for row in range(len(features))]


def first_conv(model: nn.Module) -> str:
    """The name of the model's first convolution (whose filters look at pixels)."""
    return next(name for name, module in model.named_modules() if isinstance(module, nn.modules.conv._ConvNd))


def _crop_box(field, position: tuple[int, int], size: torch.Size) -> tuple[int, int, int, int]:
    if field is None:
        return 0, 0, int(size[0]), int(size[1])
    return field.clipped_box(*position)


def _tile(picture: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """The `box` (top, left, bottom, right) of an [H,W,3] uint8 picture, resized to size×size."""
    top, left, bottom, right = box
    crop = picture[top:bottom, left:right].permute(2, 0, 1)[None].float()
    return F.interpolate(crop, size=(size, size), mode="nearest")[0].round().to(torch.uint8).permute(1, 2, 0)
