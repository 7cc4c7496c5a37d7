"""EmbeddingScatter on a clip dataset's index: the clip codes laid out, thumbnails as mosaics of each clip's filmstrip
frames (in the sprite sheet and on request), selection gives the clips' frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from cnnwidgets.backend.index import build_index
from cnnwidgets.widgets.embedding_scatter import EmbeddingScatter, clip_mosaic

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_index():
    from cnnwidgets import zoo

    dataset = torch.utils.data.Subset(zoo.motion_clips("test"), range(0, 192, 4))  # 48 clips, 6 per class
    return build_index(zoo.motion_cnn("two_stream"), dataset, ["motion.conv3.1"], k=2, thumbnails=16, progress=False)


def test_clip_mosaic_tiles_the_filmstrip_frames():
    strips = np.zeros((2, 4, 8, 8, 3), np.uint8)
    for frame in range(4):
        strips[:, frame] = 60 * frame
    mosaic = clip_mosaic(strips)
    assert mosaic.shape == (2, 8, 8, 3)
    assert [int(mosaic[0, y, x, 0]) for y, x in [(0, 0), (0, 4), (4, 0), (4, 4)]] == [0, 60, 120, 180]


def test_clip_codes_scatter_with_filmstrip_thumbnails_hover_and_selection(clip_index):
    widget = EmbeddingScatter(clip_index, "pca")
    assert widget.color_by == "label" and widget.label_names[:2] == ["left", "right"]
    coordinates = widget.coordinates
    assert coordinates.shape == (48, 2) and coordinates.min() >= 0 and coordinates.max() <= 1
    # the axes are the clip codes' two principal components (scikit-learn's, up to sign and scale)
    reference = PCA(2).fit_transform(clip_index.codes.numpy().astype(np.float64))
    for axis in range(2):
        assert abs(np.corrcoef(coordinates[:, axis], reference[:, axis])[0, 1]) > 0.999
    sheet = np.frombuffer(widget.sprite["data"], np.uint8).reshape(widget.sprite["shape"])
    side, columns = widget.sprite["thumb"], widget.sprite["columns"]
    assert side == 16
    row, column = divmod(9, columns)
    mosaic = clip_mosaic(clip_index.thumbnails[9:10].numpy())[0]
    assert np.array_equal(sheet[row * side:(row + 1) * side, column * side:(column + 1) * side], mosaic)
    widget.selection = [2, 30]
    clips = widget.selected_images()
    assert len(clips) == 2 and clips[0].shape == (16, 32, 32, 3)
    assert widget.to_png()[:4] == b"\x89PNG"


def test_clip_thumbnails_on_request_for_an_index_without_them(clip_index):
    from cnnwidgets import zoo

    dataset = torch.utils.data.Subset(zoo.motion_clips("test"), range(8))
    bare = build_index(zoo.motion_cnn("c3d"), dataset, ["features.conv3.1"], k=2, thumbnails=0, progress=False)
    widget = EmbeddingScatter(bare, "pca")
    assert widget.thumbnails_on_request and not widget.sprite
    widget.thumbnail_request = {"request": 5, "images": [1, 6]}
    answer = widget.thumbnails
    assert answer["request"] == 5 and answer["images"] == [1, 6] and answer["shape"][0] == 2
    pictures = np.frombuffer(answer["data"], np.uint8).reshape(answer["shape"])
    assert pictures.shape[1] == pictures.shape[2] and pictures.shape[3] == 3
