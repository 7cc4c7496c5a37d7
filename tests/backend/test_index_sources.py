"""Datasets the index reads without random access or as dict batches: an IterableDataset is indexed like the same
images in a list (it used to stop with a TypeError asking its length), and a DataLoader yielding dict batches keeps
its labels (they used to be dropped)."""

from __future__ import annotations

import pytest
import torch

from cnnwidgets import Inspector
from cnnwidgets.backend.index import Source, build_index
from cnnwidgets.errors import InputError

from tests.backend.test_index import Small

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = ["relu1", "relu2"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 4, (9, 3, 12, 12), generator=torch.Generator().manual_seed(2)).float()


class Stream(torch.utils.data.IterableDataset):
    """(image, label) pairs with no length and no random access."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __iter__(self):
        return ((image, position % 3) for position, image in enumerate(self.images))


class Dicts(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, position: int) -> dict:
        return {"image": self.images[position], "label": position % 3}


def test_an_iterable_dataset_is_indexed_like_the_same_images_in_a_list(images):
    inspector = Inspector(Small())
    streamed = build_index(inspector, Stream(images), LAYERS, k=3, batch_size=4, progress=False)
    listed = build_index(inspector, [(image, position % 3) for position, image in enumerate(images)], LAYERS, k=3,
                         batch_size=4, progress=False)
    assert len(streamed) == len(images)
    for layer in LAYERS:
        for channel in range(listed.layer_shape(layer)[0]):
            assert streamed.top(layer, channel) == listed.top(layer, channel), (layer, channel)
    assert streamed.labels.tolist() == [position % 3 for position in range(len(images))]
    source = Source(Stream(images))
    assert source.length is None and not source.random_access
    with pytest.raises(InputError, match="no random access"):
        source.count()


def test_a_dataloader_of_dict_batches_keeps_its_labels(images):
    inspector = Inspector(Small())
    loader = torch.utils.data.DataLoader(Dicts(images), batch_size=4)
    index = build_index(inspector, loader, LAYERS, k=3, progress=False)
    assert index.labels.tolist() == [position % 3 for position in range(len(images))]
    reference = build_index(inspector, images, LAYERS, k=3, progress=False)
    for layer in LAYERS:
        for channel in range(reference.layer_shape(layer)[0]):
            assert index.top(layer, channel) == reference.top(layer, channel), (layer, channel)


def test_a_dataloader_of_images_alone_is_read_without_labels(images):
    """`TensorDataset(images)` batches as `[images]`, a list of one tensor: images without labels."""
    inspector = Inspector(Small())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=4)
    index = build_index(inspector, loader, LAYERS, k=3, progress=False)
    assert index.labels is None and len(index) == len(images)
    reference = build_index(inspector, images, LAYERS, k=3, progress=False)
    for layer in LAYERS:
        for channel in range(reference.layer_shape(layer)[0]):
            assert index.top(layer, channel) == reference.top(layer, channel), (layer, channel)
