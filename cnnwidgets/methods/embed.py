"""2-D embeddings of CNN codes (PCA, t-SNE, UMAP) and the image-grid layout of the CS231n t-SNE figure.

Codes are reduced to 50 dimensions by PCA first (fast, and it denoises). PCA itself is instant; t-SNE and UMAP
take seconds to minutes, so widgets show PCA at once and the slower layout when it is ready. Measured on a
2-core CPU (bench/dataset_views.py): openTSNE is the fastest t-SNE and imports in ~2 s, while umap-learn takes
~30 s just to import (numba compiling); "tsne" is therefore the default, using openTSNE when installed
(`pip install openTSNE`) and scikit-learn's TSNE otherwise. Neither is imported before it is used.

A million codes: beyond FIT_SAMPLE codes, each method is fitted on a random sample of FIT_SAMPLE codes and places
the rest with its own transform, chunk by chunk (PCA's projection, openTSNE's `TSNEEmbedding.transform`,
umap-learn's `UMAP.transform`), so time grows linearly past the sample and memory stays bounded. Progress is
reported throughout: to a `progress` callback (the widgets' progress bar), else as a tqdm bar.
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
FIT_SAMPLE = 20_000
"""Layouts of more codes than this are fitted on a random sample of this many and place the rest by transform.
At 20,000 synthetic clustered codes a full openTSNE fit took 23 s on a 2-core CPU (bench/dataset_views.py); the
5-NN label accuracy of sample-fit + transform against a full fit is in bench/results/scatter.json."""
PLACE_CHUNK = 20_000
"""Codes placed by one transform call: progress moves every chunk and the transform's memory stays bounded."""
FIT_SHARE = 0.5
"""The part of the progress bar a sample fit fills before the rest is placed."""
MAX_GRID = 2500
"""At most this many images go into the grid layout (a linear assignment costs O(n³))."""

Progress = Callable[[float, np.ndarray | None], None]
"""Called with the fraction done (0..1) and, when the method has one, the current 2-D layout (rows not placed yet
are NaN while a sample-fitted layout places the rest)."""


def _reporter(progress: Progress | None, description: str) -> tuple[Progress, Callable[[], None]]:
    """`progress` itself, or (when None) a tqdm bar of percent done; returns (report, close)."""
    if progress is not None:
        return progress, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=100, desc=description, unit="%", leave=False)

    def report(fraction: float, _layout: np.ndarray | None) -> None:
        bar.update(max(0, round(100 * fraction) - bar.n))

    return report, bar.close


def fit_sample(count: int, sample: int = FIT_SAMPLE, seed: int = 0) -> np.ndarray | None:
    """Sorted row numbers of the random sample a layout of `count` codes is fitted on; None when all are (count ≤ sample)."""
    if count <= sample:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, sample, replace=False))


def _place_rest(fitted: np.ndarray, chosen: np.ndarray, data: np.ndarray, transform: Callable[[np.ndarray], np.ndarray],
                report: Progress, start: float) -> np.ndarray:
    """The [N, 2] layout with the sample's rows from `fitted` and every other row of `data` placed by `transform`,
    PLACE_CHUNK rows at a time; reports progress from `start` to 1 with the layout so far (NaN where not placed)."""
    layout = np.full((len(data), 2), np.nan, np.float32)
    layout[chosen] = fitted
    rest = np.setdiff1d(np.arange(len(data)), chosen)
    for begin in range(0, len(rest), PLACE_CHUNK):
        rows = rest[begin:begin + PLACE_CHUNK]
        layout[rows] = np.asarray(transform(data[rows]), np.float32)
        report(start + (1 - start) * min(begin + PLACE_CHUNK, len(rest)) / len(rest), layout)
    return layout


def _as_array(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    array = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if array.ndim != 2 or len(array) < 2:
        raise InputError(f"codes must be an [N, D] array of at least 2 rows, not shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError("the codes contain NaN or infinite values; index finite images")
    return array.astype(np.float32, copy=False)


def pca(codes: torch.Tensor | np.ndarray, dims: int = 2, seed: int = 0, sample: int = FIT_SAMPLE) -> np.ndarray:
    """[N, dims] principal components of [N, D] codes (randomized SVD for large inputs); the axes are fitted on a
    random sample of `sample` codes when there are more (see FIT_SAMPLE), then every code is projected."""
    from sklearn.decomposition import PCA

    array = _as_array(codes)
    dims = min(dims, array.shape[0], array.shape[1])
    model = PCA(n_components=dims, random_state=seed)
    chosen = fit_sample(len(array), sample, seed)
    if chosen is None:
        return model.fit_transform(array).astype(np.float32)
    model.fit(array[chosen])
    return np.concatenate([model.transform(array[begin:begin + PLACE_CHUNK])
                           for begin in range(0, len(array), PLACE_CHUNK)]).astype(np.float32)


def tsne_backend() -> str:
    """"openTSNE" when it is installed (fastest here), else "scikit-learn"."""
    return "openTSNE" if importlib.util.find_spec("openTSNE") is not None else "scikit-learn"


def tsne(codes: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0, progress: Progress | None = None,
         backend: str | None = None, sample: int = FIT_SAMPLE) -> np.ndarray:
    """[N, 2] t-SNE of the codes (after PCA to 50 dims), with openTSNE or scikit-learn (`backend`). Beyond `sample`
    codes it is fitted on a random sample and openTSNE's `TSNEEmbedding.transform` places the rest (scikit-learn's
    TSNE has no transform)."""
    array = _as_array(codes)
    reduced = pca(array, PCA_DIMS, seed, sample) if array.shape[1] > PCA_DIMS else array
    backend = backend or tsne_backend()
    if backend not in ("openTSNE", "scikit-learn"):
        raise InputError(f"unknown t-SNE backend {backend!r}; pick 'openTSNE' or 'scikit-learn'")
    chosen = fit_sample(len(array), sample, seed)
    if chosen is not None and backend != "openTSNE":
        raise InputError(f"a t-SNE of more than {sample} codes places the rest with openTSNE's transform, which "
                         f"{backend} lacks; pip install openTSNE (or pass at most {sample} codes)")
    report, close = _reporter(progress, "t-SNE")
    try:
        if chosen is None:
            perplexity = min(perplexity, max(1.0, (len(array) - 1) / 3))
            if backend == "openTSNE":
                layout = np.asarray(_opentsne(reduced, seed, perplexity, report), np.float32)
            else:
                from sklearn.manifold import TSNE

                layout = TSNE(perplexity=perplexity, random_state=seed, init="pca").fit_transform(reduced).astype(np.float32)
        else:
            fitted = _opentsne(reduced[chosen], seed, perplexity, _within_sample(report, chosen, len(array)))
            layout = _place_rest(np.asarray(fitted, np.float32), chosen, reduced, fitted.transform, report, FIT_SHARE)
        report(1.0, layout)
    finally:
        close()
    return layout


def _within_sample(report: Progress, chosen: np.ndarray, count: int) -> Progress:
    """A fit's progress on the sample as progress of the whole: up to FIT_SHARE, its layout on the sample's rows."""
    def fit_report(fraction: float, embedding: np.ndarray | None) -> None:
        partial = None
        if embedding is not None:
            partial = np.full((count, 2), np.nan, np.float32)
            partial[chosen] = embedding
        report(fraction * FIT_SHARE, partial)

    return fit_report


def _opentsne(reduced: np.ndarray, seed: int, perplexity: float, progress: Progress):
    """openTSNE's fitted `TSNEEmbedding` of `reduced` (an array that can also `.transform` new points)."""
    from openTSNE import TSNE

    exaggeration_iters, iters = 250, 500
    phase = {"offset": 0}

    class Report:
        def __call__(self, iteration: int, error: float, embedding) -> bool:
            done = (phase["offset"] + iteration) / (exaggeration_iters + iters)
            progress(min(done, 1.0), np.asarray(embedding, np.float32))
            if iteration >= exaggeration_iters and phase["offset"] == 0:
                phase["offset"] = exaggeration_iters
            return False

    model = TSNE(perplexity=perplexity, n_jobs=-1, random_state=seed, early_exaggeration_iter=exaggeration_iters,
                 n_iter=iters, callbacks=Report(), callbacks_every_iters=25)
    embedding = model.fit(reduced)
    # placing new points re-runs the fit's callbacks (openTSNE 1.0 hands them down) and first centres the
    # embedding in place: drop the callbacks, and centre it now so the fitted rows match the placed ones
    embedding.gradient_descent_params["callbacks"] = None
    embedding -= (embedding.max(0) + embedding.min(0)) / 2
    return embedding


def umap(codes: torch.Tensor | np.ndarray, seed: int = 0, progress: Progress | None = None,
         sample: int = FIT_SAMPLE) -> np.ndarray:
    """[N, 2] UMAP of the codes (after PCA to 50 dims). Needs `pip install umap-learn`; its first use compiles
    (about 30 s on a 2-core CPU). Beyond `sample` codes it is fitted on a random sample and umap-learn's
    `transform` places the rest."""
    if importlib.util.find_spec("umap") is None:
        raise InputError("UMAP needs the umap-learn package; pip install umap-learn, or use method='tsne'")
    import umap as umap_learn

    array = _as_array(codes)
    reduced = pca(array, PCA_DIMS, seed, sample) if array.shape[1] > PCA_DIMS else array
    chosen = fit_sample(len(array), sample, seed)
    fit_rows = reduced if chosen is None else reduced[chosen]
    # seeded, umap-learn runs on one thread whatever n_jobs says (and warns unless told so)
    model = umap_learn.UMAP(n_neighbors=min(15, len(fit_rows) - 1), random_state=seed, n_jobs=1)
    report, close = _reporter(progress, "UMAP")
    try:
        fitted = model.fit_transform(fit_rows).astype(np.float32)
        if chosen is None:
            layout = fitted
        else:
            report(FIT_SHARE, None)
            layout = _place_rest(fitted, chosen, reduced, model.transform, report, FIT_SHARE)
        report(1.0, layout)
    finally:
        close()
    return layout


def embed(codes: torch.Tensor | np.ndarray, method: str = DEFAULT_METHOD, seed: int = 0,
          progress: Progress | None = None, sample: int = FIT_SAMPLE) -> np.ndarray:
    """[N, 2] layout of [N, D] codes by `method`: "pca", "tsne" (default) or "umap"; fitted on a random sample of
    `sample` codes when there are more, the rest placed by the method's transform (see FIT_SAMPLE)."""
    if method == "pca":
        layout = pca(codes, 2, seed, sample)
        if progress is not None:
            progress(1.0, layout)
        return layout
    if method == "tsne":
        return tsne(codes, seed, progress=progress, sample=sample)
    if method == "umap":
        return umap(codes, seed, progress=progress, sample=sample)
    raise InputError(f"unknown embedding method {method!r}; pick one of {', '.join(METHODS)}")


def normalize(layout: np.ndarray) -> np.ndarray:
    """The layout scaled into [0, 1]² keeping its aspect ratio (centered on the shorter axis); NaN rows (points
    not placed yet) stay NaN."""
    layout = np.asarray(layout, np.float64)
    low, high = np.nanmin(layout, 0), np.nanmax(layout, 0)
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
