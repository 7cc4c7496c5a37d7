"""2-D embeddings of CNN codes (PCA, t-SNE, UMAP) and the image-grid layout of the CS231n t-SNE figure.

Codes are reduced to 50 dimensions by PCA first (fast, and it denoises). PCA itself is instant; t-SNE and UMAP
take seconds to minutes, so widgets show PCA at once and the slower layout when it is ready. Measured on a
2-core CPU (bench/dataset_views.py): openTSNE is the fastest t-SNE and imports in ~2 s, while umap-learn takes
~30 s just to import (numba compiling); "tsne" is therefore the default, using openTSNE when installed
(`pip install openTSNE`) and scikit-learn's TSNE otherwise. Neither is imported before it is used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import torch

from ..errors import InputError

METHODS = ("pca", "tsne", "umap")
DEFAULT_METHOD = "tsne"
PCA_DIMS = 50
MAX_GRID = 2500
"""At most this many images go into the grid layout (a linear assignment costs O(n³))."""

Progress = Callable[[float, np.ndarray | None], None]
"""Called with the fraction done (0..1) and, when the method has one, the current 2-D layout."""


def _as_array(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    array = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if array.ndim != 2 or len(array) < 2:
        raise InputError(f"codes must be an [N, D] array of at least 2 rows, not shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError("the codes contain NaN or infinite values; index finite images")
    return array.astype(np.float32, copy=False)


def pca(codes: torch.Tensor | np.ndarray, dims: int = 2, seed: int = 0) -> np.ndarray:
    """[N, dims] principal components of [N, D] codes (randomized SVD for large inputs)."""
    from sklearn.decomposition import PCA

    array = _as_array(codes)
    dims = min(dims, array.shape[0], array.shape[1])
    return PCA(n_components=dims, random_state=seed).fit_transform(array).astype(np.float32)


def tsne_backend() -> str:
    """"openTSNE" when it is installed (fastest here), else "scikit-learn"."""
    return "openTSNE" if importlib.util.find_spec("openTSNE") is not None else "scikit-learn"


def tsne(codes: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0, progress: Progress | None = None,
         backend: str | None = None) -> np.ndarray:
    """[N, 2] t-SNE of the codes (after PCA to 50 dims), with openTSNE or scikit-learn (`backend`)."""
    array = _as_array(codes)
    reduced = pca(array, PCA_DIMS, seed) if array.shape[1] > PCA_DIMS else array
    perplexity = min(perplexity, max(1.0, (len(array) - 1) / 3))
    backend = backend or tsne_backend()
    if backend == "openTSNE":
        from openTSNE import TSNE

        exaggeration_iters, iters = 250, 500
        phase = {"offset": 0}

        class Report:
            def __call__(self, iteration: int, error: float, embedding) -> bool:
                if progress is not None:
                    done = (phase["offset"] + iteration) / (exaggeration_iters + iters)
                    progress(min(done, 1.0), np.asarray(embedding, np.float32))
                if iteration >= exaggeration_iters and phase["offset"] == 0:
                    phase["offset"] = exaggeration_iters
                return False

        model = TSNE(perplexity=perplexity, n_jobs=-1, random_state=seed, early_exaggeration_iter=exaggeration_iters,
                     n_iter=iters, callbacks=Report() if progress else None, callbacks_every_iters=25)
        layout = np.asarray(model.fit(reduced), np.float32)
    elif backend == "scikit-learn":
        from sklearn.manifold import TSNE

        layout = TSNE(perplexity=perplexity, random_state=seed, init="pca").fit_transform(reduced).astype(np.float32)
    else:
        raise InputError(f"unknown t-SNE backend {backend!r}; pick 'openTSNE' or 'scikit-learn'")
    if progress is not None:
        progress(1.0, layout)
    return layout


def umap(codes: torch.Tensor | np.ndarray, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """[N, 2] UMAP of the codes (after PCA to 50 dims). Needs `pip install umap-learn`; its first use compiles
    (about 30 s on a 2-core CPU)."""
    if importlib.util.find_spec("umap") is None:
        raise InputError("UMAP needs the umap-learn package; pip install umap-learn, or use method='tsne'")
    import umap as umap_learn

    array = _as_array(codes)
    reduced = pca(array, PCA_DIMS, seed) if array.shape[1] > PCA_DIMS else array
    neighbors = min(15, len(array) - 1)
    # seeded, umap-learn runs on one thread whatever n_jobs says (and warns unless told so)
    model = umap_learn.UMAP(n_neighbors=neighbors, random_state=seed, n_jobs=1)
    layout = model.fit_transform(reduced).astype(np.float32)
    if progress is not None:
        progress(1.0, layout)
    return layout


def embed(codes: torch.Tensor | np.ndarray, method: str = DEFAULT_METHOD, seed: int = 0,
          progress: Progress | None = None) -> np.ndarray:
    """[N, 2] layout of [N, D] codes by `method`: "pca", "tsne" (default) or "umap"."""
    if method == "pca":
        layout = pca(codes, 2, seed)
        if progress is not None:
            progress(1.0, layout)
        return layout
    if method == "tsne":
        return tsne(codes, seed, progress=progress)
    if method == "umap":
        return umap(codes, seed, progress=progress)
    raise InputError(f"unknown embedding method {method!r}; pick one of {', '.join(METHODS)}")


def normalize(layout: np.ndarray) -> np.ndarray:
    """The layout scaled into [0, 1]² keeping its aspect ratio (centered on the shorter axis)."""
    layout = np.asarray(layout, np.float64)
    low, high = layout.min(0), layout.max(0)
    span = float((high - low).max()) or 1.0
    return ((layout - low) / span + (1 - (high - low) / span) / 2).astype(np.float32)


def grid_shape(count: int, aspect: float = 1.0) -> tuple[int, int]:
    """(columns, rows) of the smallest about-`aspect` grid with at least `count` cells."""
    columns = max(1, int(np.ceil(np.sqrt(count * aspect))))
    return columns, max(1, int(np.ceil(count / columns)))


def grid_layout(layout: np.ndarray, columns: int | None = None, rows: int | None = None) -> np.ndarray:
    """[N, 2] integer (column, row) cells, one image per cell, that keep the 2-D layout's neighbourhoods: an
    optimal linear assignment (scipy's `linear_sum_assignment`) of points to cell centers by squared distance,
    as in the CS231n t-SNE grid figure. At most MAX_GRID points."""
    from scipy.optimize import linear_sum_assignment

    points = normalize(layout).astype(np.float64)
    count = len(points)
    if count > MAX_GRID:
        raise InputError(f"the grid layout takes at most {MAX_GRID} images, not {count}; pass a subset")
    if columns is None or rows is None:
        columns, rows = grid_shape(count)
    if columns * rows < count:
        raise InputError(f"a {columns}×{rows} grid has fewer cells than the {count} images; pass a bigger grid")
    cells = np.stack(np.meshgrid(np.arange(columns), np.arange(rows)), -1).reshape(-1, 2)
    centers = (cells + 0.5) / np.array([columns, rows]) * (points.max(0) - points.min(0)).max() + points.min(0)
    cost = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    point_order, cell_order = linear_sum_assignment(cost)
    assigned = np.zeros((count, 2), np.int32)
    assigned[point_order] = cells[cell_order]
    return assigned
