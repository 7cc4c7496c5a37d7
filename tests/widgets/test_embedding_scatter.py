"""EmbeddingScatter and the embedding methods: PCA at once, t-SNE when ready, sprite sheet, grid layout."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from cnnwidgets.backend.index import build_index
from cnnwidgets.errors import InputError
import cnnwidgets.methods.embed  # noqa: F401 - the module, whatever the package exports
from cnnwidgets.widgets.embedding_scatter import EmbeddingScatter, sprite_sheet
from cnnwidgets.zoo.digits import digits, digits_cnn

E = sys.modules["cnnwidgets.methods.embed"]


@pytest.fixture(scope="module")
def index():
    return build_index(digits_cnn(), digits("test"), ["relu3"], k=4, progress=False)


def test_pca_at_once_then_tsne_when_ready(index):
    widget = EmbeddingScatter(index)  # t-SNE is the default
    assert widget.method == "tsne"
    assert widget.points["method"] in ("pca", "tsne")
    widget.wait(120)
    assert widget.points["method"] == "tsne" and widget.points["final"]
    assert widget.progress == 1.0 and "t-SNE of 359 images" in widget.status
    coordinates = widget.coordinates
    assert coordinates.shape == (359, 2) and coordinates.min() >= 0 and coordinates.max() <= 1
    # same-class points end up closer to each other than to the rest
    labels = index.labels.numpy()
    same = np.mean([np.linalg.norm(coordinates[labels == d] - coordinates[labels == d].mean(0), axis=1).mean() for d in range(10)])
    assert same < 0.5 * np.linalg.norm(coordinates - coordinates.mean(0), axis=1).mean()
    widget.method = "pca"  # shown at once, no thread
    assert widget.points["method"] == "pca" and widget.points["final"]
    widget.method = "tsne"  # computed before: at once too
    assert widget.points["method"] == "tsne" and widget.points["final"]


def test_a_newer_method_supersedes_a_running_one(index):
    widget = EmbeddingScatter(index, "tsne")
    widget.method = "pca"
    widget.wait(60)
    assert widget.points["method"] == "pca" and widget.points["final"] and widget.error == ""


def test_colors_thumbnails_and_selection(index):
    widget = EmbeddingScatter(index, "pca")
    assert widget.color_by == "label" and widget.has_labels
    assert np.array_equal(np.frombuffer(widget.labels["data"], np.int32), index.labels.numpy())
    assert widget.label_names == [str(d) for d in range(10)]
    sheet = np.frombuffer(widget.sprite["data"], np.uint8).reshape(widget.sprite["shape"])
    side, columns = widget.sprite["thumb"], widget.sprite["columns"]
    assert side == 32 and columns == 19
    row, column = divmod(25, columns)
    assert np.array_equal(sheet[row * side:(row + 1) * side, column * side:(column + 1) * side], index.thumbnails[25].numpy())
    widget.selection = [3, 7]
    pictures = widget.selected_images()
    assert len(pictures) == 2 and pictures[0].shape == (32, 32, 3)
    widget.color_by = "prediction"
    assert widget.to_png()[:4] == b"\x89PNG"


def test_no_labels_means_colors_by_prediction(index):
    unlabelled = build_index(digits_cnn(), digits("test").tensors()[0][:40], ["relu3"], k=2, progress=False)
    widget = EmbeddingScatter(unlabelled, "pca")
    assert widget.color_by == "prediction" and not widget.has_labels
    with pytest.raises(InputError, match="no labels"):
        widget.color_by = "label"
    with pytest.raises(InputError, match="no labels"):
        EmbeddingScatter(unlabelled, "pca", color_by="label")


def test_grid_layout_puts_each_image_in_its_own_cell(index):
    widget = EmbeddingScatter(index, "pca", arrangement="grid")
    cells = np.frombuffer(widget.grid["data"], np.int32).reshape(widget.grid["shape"])
    columns, rows = widget.grid["columns"], widget.grid["rows"]
    assert columns * rows >= 359 and len({tuple(cell) for cell in cells}) == 359
    assert cells[:, 0].max() < columns and cells[:, 1].max() < rows
    png = widget.to_png()
    assert png[:4] == b"\x89PNG" and len(png) > 20000


def test_grid_assignment_is_optimal_on_a_grid():
    cells = np.stack(np.meshgrid(np.arange(4), np.arange(3)), -1).reshape(-1, 2)
    order = np.random.default_rng(0).permutation(12)
    points = cells[order].astype(np.float32) + 0.5
    assert np.array_equal(E.grid_layout(points, 4, 3), cells[order])
    with pytest.raises(InputError, match="fewer cells"):
        E.grid_layout(points, 2, 2)


def test_sprite_sheet_stays_small_for_large_datasets():
    thumbnails = np.random.default_rng(0).integers(0, 255, (20000, 32, 32, 3), dtype=np.uint8)
    sheet, side, columns = sprite_sheet(thumbnails)
    assert side == 20 and columns == 142 and sheet.nbytes <= 24 * 2**20
    small, side_small, _ = sprite_sheet(thumbnails[:10])
    assert side_small == 32 and small.shape == (3 * 32, 4 * 32, 3)


def test_embedding_methods_and_bad_input():
    codes = torch.randn(60, 8)
    assert E.embed(codes, "pca").shape == (60, 2)
    assert E.tsne(codes, backend="scikit-learn").shape == (60, 2)
    normalized = E.normalize(np.array([[0, 0], [2, 1]], np.float32))
    assert normalized.tolist() == [[0, 0.25], [1, 0.75]]
    with pytest.raises(InputError, match="unknown embedding method"):
        E.embed(codes, "isomap")
    with pytest.raises(InputError, match="NaN"):
        E.pca(torch.full((5, 3), float("nan")))


def test_umap_without_umap_learn_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real_find_spec(name, *a))
    with pytest.raises(InputError, match="pip install umap-learn"):
        E.umap(torch.randn(60, 8))


def test_bad_arguments(index):
    with pytest.raises(InputError, match="needs an index"):
        EmbeddingScatter(np.zeros((3, 2)))
    no_codes = build_index(digits_cnn(), digits("test").tensors()[0][:10], ["relu3"], codes=None, progress=False)
    with pytest.raises(InputError, match="no CNN codes"):
        EmbeddingScatter(no_codes)
    with pytest.raises(InputError, match="unknown embedding method"):
        EmbeddingScatter(index, "mds")
    with pytest.raises(TypeError, match="unexpected arguments"):
        EmbeddingScatter(index, "pca", colour="label")


def clustered_codes(count: int, dims: int = 16, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` codes in `classes` well-separated Gaussian clusters, and their labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, (classes, dims)).astype(np.float32)
    labels = np.arange(count) % classes
    return centers[labels] + rng.normal(0, 1, (count, dims)).astype(np.float32), labels


def knn5_accuracy(layout: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 5-NN label accuracy in the layout (scikit-learn's neighbours)."""
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=6).fit(layout).kneighbors(layout, return_distance=False)[:, 1:]
    votes = np.array([np.bincount(labels[row], minlength=labels.max() + 1).argmax() for row in neighbours])
    return float((votes == labels).mean())


def test_pca_beyond_the_sample_projects_every_code_on_the_sample_axes():
    from sklearn.decomposition import PCA

    codes, _ = clustered_codes(500)
    chosen = E.fit_sample(500, 120, seed=3)
    assert len(chosen) == 120 and np.array_equal(chosen, np.unique(chosen))
    assert E.fit_sample(120, 120) is None  # at most the sample: a plain fit
    expected = PCA(n_components=2, random_state=3).fit(codes[chosen]).transform(codes)
    assert np.allclose(E.pca(codes, 2, seed=3, sample=120), expected, atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("openTSNE") is None, reason="pip install openTSNE")
def test_tsne_fits_a_sample_and_places_the_rest_with_opentsne_transform():
    from openTSNE import TSNE

    codes, labels = clustered_codes(240)
    reports = []
    layout = E.tsne(codes, progress=lambda fraction, shown: reports.append((fraction, None if shown is None else shown.copy())),
                    sample=80)
    chosen = E.fit_sample(240, 80)
    rest = np.setdiff1d(np.arange(240), chosen)
    # the reference: openTSNE fitted on the sample alone, then its own transform of the rest
    reference = TSNE(perplexity=30, n_jobs=-1, random_state=0, early_exaggeration_iter=250, n_iter=500).fit(codes[chosen])
    placed = np.asarray(reference.transform(codes[rest]))  # centres `reference` in place first
    assert np.allclose(layout[chosen], reference, atol=1e-4)
    assert np.allclose(layout[rest], placed, atol=1e-4)
    assert knn5_accuracy(layout, labels) >= 0.95
    # progress: rising to 1; while fitting, only the sample's rows are placed (the rest NaN)
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    fitting = [shown for fraction, shown in reports if fraction < E.FIT_SHARE and shown is not None]
    assert fitting and all(np.isfinite(shown[chosen]).all() and np.isnan(shown[rest]).all() for shown in fitting)
    with pytest.raises(InputError, match="pip install openTSNE"):
        E.tsne(codes, backend="scikit-learn", sample=80)


def test_a_large_index_sends_thumbnails_on_request_and_fits_layouts_on_a_sample(index, monkeypatch):
    scatter_module = sys.modules[EmbeddingScatter.__module__]
    monkeypatch.setattr(scatter_module, "SPRITE_MAX_IMAGES", 100)  # 359 images: "too many" for one sheet
    monkeypatch.setattr(scatter_module, "FIT_SAMPLE", 150)
    widget = EmbeddingScatter(index, "pca")
    assert widget.sprite == {} and widget.thumbnails_on_request and widget.first_id == 0
    assert widget.coordinates.shape == (359, 2) and np.isfinite(widget.coordinates).all()
    # a request from the browser: the answer echoes its id and holds the index's own thumbnails
    widget.thumbnail_request = {"request": 7, "images": [3, 5, 10**6]}
    answer = widget.thumbnails
    assert answer["request"] == 7 and answer["images"] == [3, 5]
    pictures = np.frombuffer(answer["data"], np.uint8).reshape(answer["shape"])
    assert np.array_equal(pictures, index.thumbnails[[3, 5]].numpy())
    widget.arrangement = "grid"  # the figure cuts the grid's images from the thumbnails, as no sheet was sent
    assert widget.to_png()[:4] == b"\x89PNG"
