"""The UMAP path for real (umap-learn is pinned in requirements-dev.txt): one test, as `import umap` alone
takes about 30 s while numba compiles."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cnnwidgets.backend.index import build_index
from cnnwidgets.widgets.embedding_scatter import EmbeddingScatter
from cnnwidgets.zoo.digits import digits, digits_cnn

embed = importlib.import_module("cnnwidgets.methods.embed")  # the module, not a function of the same name


def test_umap_layout_in_the_scatter_separates_the_digits():
    pytest.importorskip("umap", reason="pip install -r requirements-dev.txt (umap-learn)")
    index = build_index(digits_cnn(), digits("test"), ["relu3"], k=1, progress=False)
    widget = EmbeddingScatter(index, method="umap").wait(600)
    assert widget.error == ""
    assert widget.points["method"] == "umap" and widget.points["final"]
    assert widget.progress == 1.0 and "UMAP of 359 images" in widget.status
    # the layout shown is umap-learn's (seeded, so reproducible), PCA'd codes in, scaled into [0, 1]²
    assert np.array_equal(widget.coordinates, embed.normalize(embed.umap(index.codes, seed=0)))
    # and a good one: each digit's 5 nearest neighbours in 2-D mostly share its label, far more than under PCA
    labels = index.labels.numpy()

    def knn5_accuracy(layout: np.ndarray) -> float:
        distances = ((layout[:, None, :] - layout[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(distances, np.inf)
        neighbours = np.argsort(distances, 1)[:, :5]
        votes = np.array([np.bincount(labels[row], minlength=10).argmax() for row in neighbours])
        return float((votes == labels).mean())

    umap_accuracy, pca_accuracy = knn5_accuracy(widget.coordinates), knn5_accuracy(embed.pca(index.codes, 2))
    assert umap_accuracy >= 0.9 and umap_accuracy > pca_accuracy + 0.2, (umap_accuracy, pca_accuracy)


def test_umap_fits_a_sample_and_places_the_rest_with_its_transform():
    pytest.importorskip("umap", reason="pip install -r requirements-dev.txt (umap-learn)")
    import umap as umap_learn

    from tests.widgets.test_embedding_scatter import clustered_codes, knn5_accuracy

    codes, labels = clustered_codes(300)
    layout = embed.umap(codes, progress=lambda *_: None, sample=120)
    chosen = embed.fit_sample(300, 120)
    rest = np.setdiff1d(np.arange(300), chosen)
    # the reference: umap-learn fitted on the sample alone (seeded as cnnwidgets does), then its own transform
    reference = umap_learn.UMAP(n_neighbors=15, random_state=0, n_jobs=1)
    assert np.array_equal(layout[chosen], reference.fit_transform(codes[chosen]).astype(np.float32))
    assert np.allclose(layout[rest], reference.transform(codes[rest]), atol=1e-4)
    assert knn5_accuracy(layout, labels) >= 0.95
