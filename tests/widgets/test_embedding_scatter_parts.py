"""EmbeddingScatter on an Index made from its parts (codes, labels and thumbnails, no model input shape), as the
million-point browser test builds one: thumbnails asked for on request come back (the request used to raise a
KeyError on the missing input shape, so the browser's hover never got its picture)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from cnnwidgets.backend.index import Index
from cnnwidgets.widgets.embedding_scatter import EmbeddingScatter

pytestmark = pytest.mark.usefixtures("one_thread")
COUNT = 40


def test_thumbnails_on_request_from_an_index_made_of_parts(monkeypatch):
    monkeypatch.setattr(sys.modules[EmbeddingScatter.__module__], "SPRITE_MAX_IMAGES", 10)  # 40 images: on request
    labels = np.arange(COUNT) % 4
    thumbnails = np.random.default_rng(0).integers(0, 256, (COUNT, 4, 4, 3), dtype=np.uint8)
    index = Index({"config": {"layers": [], "k": 0, "codes": "synthetic"}, "offset": 0, "count": COUNT,
                   "codes": torch.randn(COUNT, 8, generator=torch.Generator().manual_seed(0)),
                   "labels": torch.from_numpy(labels), "predictions": torch.from_numpy(labels),
                   "label_names": list("abcd"), "class_names": list("abcd"), "thumbnails": torch.from_numpy(thumbnails)})
    widget = EmbeddingScatter(index, "pca")
    assert widget.thumbnails_on_request
    widget.thumbnail_request = {"request": 3, "images": [7, 2]}
    answer = widget.thumbnails
    assert answer["request"] == 3 and answer["images"] == [7, 2]
    assert np.array_equal(np.frombuffer(answer["data"], np.uint8).reshape(answer["shape"]), thumbnails[[7, 2]])
