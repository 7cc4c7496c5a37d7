"""Do ConvNets learn correspondence? (Long, Zhang & Darrell 2014, as the CS231n notes ask it.) A point in one image
is matched to the point of another image whose feature vector at a chosen layer is most similar, by cosine
similarity (nearest neighbour of the unit-length vectors), with the similarity over the whole second image.

Points are (row, col) in the model's input pixels (what `inspector.display_image` shows). A point stands for the
feature cell it falls in (cell i of an h-row map covers rows i·H/h … (i+1)·H/h); a match is reported as the centre
of the best cell, so a layer locates to within half a cell: 1 px at stride 2, 16 px at stride 32.

`keypoint_transfer` measures it on a synthetic pair with known ground truth: an image and an affine warp of it
(rotation, scale, shift about the centre); a grid of points is matched layer by layer and the fraction that lands
within `k` pixels of its true warped position is the layer's accuracy (PCK, the "percentage of correct keypoints"
Long et al. report; `k` defaults to 10 % of the image side as theirs). Shallow layers locate finely but change
under the warp; deep layers are coarser but warp-tolerant, so they win as the warp grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError

PCK_FRACTION = 0.1
"""Default `k` of keypoint transfer as a fraction of the image side (PCK@0.1, as Long et al. 2014)."""
DEFAULT_LAYER_COUNT = 6
"""Layers on the default accuracy curve: evenly spaced from shallow to deep."""

Point = tuple[float, float]


@dataclass
class Matches:
    """The best match in image b of each point of image a at one layer.

    `matches` are cell centres in image b's input pixels; `scores` the cosine similarity of each best match;
    `similarity` [N, h, w] the cosine similarity of each point's feature vector to every cell of image b's map."""

    layer: str
    points: list[Point]
    matches: list[Point]
    scores: list[float]
    similarity: torch.Tensor
    cells_a: list[tuple[int, int]]
    cells_b: list[tuple[int, int]]


def _batch(inspector, image: object) -> torch.Tensor:
    return inspector.preprocess(image).cpu()


def spatial_size(tensor: torch.Tensor) -> tuple[int, int]:
    """(height, width) of an image batch or feature map [..., H, W]."""
    return tensor.shape[-2], tensor.shape[-1]


def _cell(point: Point, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    row, col = (min(n - 1, max(0, math.floor(p * n / s))) for p, n, s in zip(point, grid, size))
    return row, col


def _centre(cell: tuple[int, int], grid: tuple[int, int], size: tuple[int, int]) -> Point:
    row, col = ((c + 0.5) * s / n - 0.5 for c, n, s in zip(cell, grid, size))
    return row, col


def check_points(points: Sequence[Point], size: tuple[int, int]) -> list[Point]:
    """`points` as (row, col) floats inside an image of `size`, else a one-line InputError."""
    try:
        checked = [(float(row), float(col)) for row, col in points]
    except (TypeError, ValueError):
        raise InputError("points must be (row, col) pairs in input pixels, e.g. [(40, 60), (100, 20)]") from None
    if not checked:
        raise InputError("no points to match; pass at least one (row, col) pair")
    for row, col in checked:
        if not (0 <= row < size[0] and 0 <= col < size[1]):
            raise InputError(f"point {(row, col)} lies outside the {size[0]}×{size[1]} input; pass rows 0..{size[0] - 1}, cols 0..{size[1] - 1}")
    return checked


def matched_batches(inspector, image_a: object, image_b: object, resize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as model inputs of one size: image b resized (bilinear) to image a's input size when they
    differ and `resize`, else a one-line InputError."""
    a, b = _batch(inspector, image_a), _batch(inspector, image_b)
    if a.shape[-2:] != b.shape[-2:]:
        if not resize:
            raise InputError(f"the images are {tuple(a.shape[-2:])} and {tuple(b.shape[-2:])} after preprocessing; "
                             "pass images of one size or resize=True")
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
    return a, b


def correspondence(inspector, image_a: object, image_b: object, points: Sequence[Point], layer: str,
                   resize: bool = True) -> Matches:
    """Match each (row, col) point of image a to image b by nearest neighbour of the feature vectors at `layer`.

    Images of different input sizes: image b is resized to image a's (`resize=True`), and matches are in that
    resized image's pixels; `resize=False` makes that an InputError instead."""
    a, b = matched_batches(inspector, image_a, image_b, resize)
    size = spatial_size(a)
    checked = check_points(points, size)
    info = inspector.layer(layer)
    if len(info.shape) != 3:
        raise InputError(f"layer {info.name!r} has no spatial map (shape {info.shape}); pick a layer with [C,H,W] output")
    features_a, features_b = inspector.activations(a, info.name), inspector.activations(b, info.name)
    return _match(info.name, features_a, features_b, checked, size)


def _match(layer: str, features_a: torch.Tensor, features_b: torch.Tensor, points: list[Point],
           size: tuple[int, int]) -> Matches:
    grid = spatial_size(features_a)
    unit_a = F.normalize(features_a.float().flatten(1), dim=0)  # [C, h·w], each column unit length
    unit_b = F.normalize(features_b.float().flatten(1), dim=0)
    cells_a = [_cell(point, grid, size) for point in points]
    queries = torch.stack([unit_a[:, row * grid[1] + col] for row, col in cells_a])  # [N, C]
    similarity = (queries @ unit_b).view(len(points), *grid)
    best = similarity.flatten(1).argmax(1)
    cells_b = [(int(index) // grid[1], int(index) % grid[1]) for index in best]
    return Matches(layer, points, [_centre(cell, grid, size) for cell in cells_b],
                   [float(similarity[i].flatten()[index]) for i, index in enumerate(best)], similarity, cells_a, cells_b)


def affine_matrix(size: tuple[int, int], angle: float = 0.0, scale: float = 1.0, shift: Point = (0.0, 0.0)) -> torch.Tensor:
    """[3,3] map of (row, col, 1) in the original to the warped image: rotate by `angle` degrees (counter-clockwise
    as seen), scale by `scale`, both about the image centre, then shift by `shift` (rows, cols) pixels."""
    centre_row, centre_col = (size[0] - 1) / 2, (size[1] - 1) / 2
    cos, sin = math.cos(math.radians(angle)) * scale, math.sin(math.radians(angle)) * scale
    # with rows pointing down, a counter-clockwise turn maps (dr, dc) -> (cos·dr − sin·dc, sin·dr + cos·dc)
    linear = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    centre = torch.tensor([centre_row, centre_col], dtype=torch.float64)
    offset = centre - linear @ centre + torch.tensor(shift, dtype=torch.float64)
    matrix = torch.eye(3, dtype=torch.float64)
    matrix[:2, :2], matrix[:2, 2] = linear, offset
    return matrix


def affine_warp(batch: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """[N,C,H,W] warped by a [3,3] pixel map (`affine_matrix`): output pixel q shows input pixel matrix⁻¹·q
    (bilinear; zeros outside, the mean colour of a normalized input)."""
    height, width = batch.shape[-2:]
    inverse = torch.linalg.inv(matrix)
    # normalized (x, y) = (2·col + 1) / W − 1, (2·row + 1) / H − 1, as grid_sample with align_corners=False
    to_pixels = torch.tensor([[0, height / 2, (height - 1) / 2], [width / 2, 0, (width - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    to_normal = torch.linalg.inv(torch.tensor([[width / 2, 0, (width - 1) / 2], [0, height / 2, (height - 1) / 2], [0, 0, 1]],
                                              dtype=torch.float64))
    # from normalized (x, y) of the output to pixels (row, col), through the inverse map, back to normalized (x, y)
    swap = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    theta = to_normal @ swap @ inverse @ to_pixels
    grid = F.affine_grid(theta[:2].float().unsqueeze(0).expand(len(batch), -1, -1), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_points(points: Sequence[Point], matrix: torch.Tensor) -> list[Point]:
    """(row, col) points mapped by a [3,3] pixel map."""
    moved = matrix @ torch.tensor([[row, col, 1.0] for row, col in points], dtype=torch.float64).T
    return [(float(row), float(col)) for row, col in moved[:2].T]


@dataclass
class TransferCurve:
    """Keypoint-transfer accuracy per layer on one synthetic warp: the fraction of points matched within `k` px of
    their true position (`accuracy`), and the mean distance in px (`error`), shallow to deep."""

    layers: list[str]
    accuracy: list[float]
    error: list[float]
    k: float
    points: list[Point]
    truth: list[Point]
    matrix: torch.Tensor


def default_layers(inspector, count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """`count` layers with a spatial map bigger than 1×1, evenly spaced from shallow to deep (activation layers
    where the model has them)."""
    spatial = [layer for layer in inspector.layers if len(layer.shape) == 3 and layer.shape[1] * layer.shape[2] > 1]
    candidates = [layer for layer in spatial if layer.kind == "activation"] or spatial
    if not candidates:
        raise InputError("the model has no layer with a spatial feature map; pass layers=")
    picks = sorted({round(i * (len(candidates) - 1) / max(1, count - 1)) for i in range(count)})
    return [candidates[i].name for i in picks]


def keypoint_transfer(inspector, image: object, layers: Sequence[str] | None = None, *, angle: float = 0.0,
                      scale: float = 1.0, shift: Point = (0.0, 0.0), k: float | None = None, grid: int = 8) -> TransferCurve:
    """Accuracy of matching `image` to its affine warp (`angle` degrees, `scale`, `shift` px) at each of `layers`
    (default: `default_layers`): a `grid`×`grid` lattice of points over the image's middle, those whose true warped
    position stays inside the image, each matched by `correspondence`; correct within `k` px (default 10 % of the
    image side)."""
    batch = _batch(inspector, image)
    size = spatial_size(batch)
    if not isinstance(grid, int) or grid < 1:
        raise InputError(f"grid={grid!r}; pass a whole number of points per side ≥ 1")
    k = PCK_FRACTION * max(size) if k is None else k
    if not isinstance(k, (int, float)) or k <= 0:
        raise InputError(f"k={k!r}; pass a distance in pixels > 0")
    matrix = affine_matrix(size, angle, scale, shift)
    warped = affine_warp(batch, matrix)
    lattice = [((i + 0.5) * size[0] / grid * 0.6 + 0.2 * size[0], (j + 0.5) * size[1] / grid * 0.6 + 0.2 * size[1])
               for i in range(grid) for j in range(grid)]
    pairs = [(p, q) for p, q in zip(lattice, warp_points(lattice, matrix)) if 0 <= q[0] < size[0] and 0 <= q[1] < size[1]]
    if not pairs:
        raise InputError("the warp moves every point outside the image; use a smaller shift, scale or angle")
    points, truth = [p for p, _ in pairs], [q for _, q in pairs]
    names = [inspector.layer(name).name for name in layers] if layers is not None else default_layers(inspector)
    inspector.activations(batch, names), inspector.activations(warped, names)  # one forward each; matching reads the cache
    accuracy, error = [], []
    for name in names:
        found = correspondence(inspector, batch, warped, points, name)
        distances = [math.dist(m, t) for m, t in zip(found.matches, truth)]
        accuracy.append(sum(d <= k for d in distances) / len(distances))
        error.append(sum(distances) / len(distances))
    return TransferCurve(names, accuracy, error, float(k), points, truth, matrix)
