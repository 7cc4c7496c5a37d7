"""The dataset index: streaming top-k equals brute force, shards merge exactly, save/load, stale refused, resume."""

from __future__ import annotations

import importlib
import os

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn

import cnnwidgets.backend.index.builder as builder_module
from cnnwidgets import Inspector
from cnnwidgets.backend.index import HASH_CHECKS, NO_IMAGE, Index, build_index, weights_fingerprint
from cnnwidgets.errors import InputError
from tests.conftest import assert_same_state, hooks_left, model_state

LAYERS = ["relu1", "relu2"]


class Small(nn.Module):
    """Integer weights on integer inputs: every activation is exact, whatever the batch or summation order."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randint(-3, 4, parameter.shape, generator=generator).float())

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        return self.fc(self.gap(self.relu2(self.conv2(x))).flatten(1))


@pytest.fixture
def small() -> Inspector:
    return Inspector(Small())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, 4, (23, 3, 12, 12), generator=generator).float()
    x[7] = x[2]  # duplicates: equal activations, the tie goes to the lower id
    x[19] = x[2]
    return x


def brute_force(inspector: Inspector, images: torch.Tensor, layer: str, k: int):
    """All maps in one pass; per channel, sort every image by (max activation desc, id asc)."""
    maps = torch.stack([inspector.activations(image, layer) for image in images])  # [N, C, H, W]
    flat = maps.flatten(2)
    values, where = flat.max(2)
    width = maps.shape[-1]
    expected = []
    for channel in range(maps.shape[1]):
        order = sorted(range(len(images)), key=lambda i: (-float(values[i, channel]), i))[:k]
        expected.append([(i, float(values[i, channel]), (int(where[i, channel]) // width, int(where[i, channel]) % width)) for i in order])
    return expected


@pytest.mark.parametrize("merge", ["in-place", "every-k-images", "every-4k-images"])
@pytest.mark.parametrize("sparse_below", [0.0, 1.01], ids=["every-position-searched", "only-maxima-above-the-floor"])
def test_streaming_top_k_equals_brute_force(small, images, sparse_below, merge, monkeypatch):
    """In place batch by batch (the CPU's `topk.merge_into`) or by `_select` every few batches (what a GPU runs)."""
    monkeypatch.setattr(builder_module, "SPARSE_BELOW", dict.fromkeys(builder_module.SPARSE_BELOW, sparse_below))
    if merge != "in-place":
        monkeypatch.setattr(builder_module, "MERGE_IN_PLACE_ON", ())
        monkeypatch.setattr(builder_module, "PENDING_TIMES_K", 1 if merge == "every-k-images" else 4)
    index = build_index(small, images, LAYERS, k=5, batch_size=4, progress=False)
    for layer in LAYERS:
        expected = brute_force(small, images, layer, 5)
        for channel, wanted in enumerate(expected):
            assert index.top(layer, channel) == wanted, (layer, channel)
    ties = [entry for layer in LAYERS for channel in range(index.layer_shape(layer)[0]) for entry in index.top(layer, channel)]
    assert any(image_id == 2 for image_id, _, _ in ties)
    # equal activations: 2 always comes before its copies 7 and 19
    for layer in LAYERS:
        for channel in range(index.layer_shape(layer)[0]):
            ids = [image_id for image_id, _, _ in index.top(layer, channel)]
            for copy in (7, 19):
                if copy in ids and 2 in ids:
                    assert ids.index(2) < ids.index(copy)


def test_batching_does_not_change_the_index(small, images):
    one = build_index(small, images, LAYERS, k=5, batch_size=1, progress=False)
    seven = build_index(small, images, LAYERS, k=5, batch_size=7, progress=False)
    assert_same_index(one, seven)


def test_codes_labels_predictions_and_thumbnails(small, images):
    labels = list(range(23))
    dataset = [(image, label % 3) for image, label in zip(images, labels)]
    index = build_index(small, dataset, LAYERS, k=3, thumbnails=8, progress=False)
    assert len(index) == 23 and index.complete
    assert index.codes.shape == (23, 5)  # the input of the last Linear
    with torch.inference_mode():
        logits = small.model(images)
        codes = small.model.gap(small.model.relu2(small.model.conv2(small.model.pool(small.model.relu1(small.model.conv1(images)))))).flatten(1)
    assert torch.equal(index.codes, codes)
    assert torch.equal(index.predictions, logits.argmax(1))
    assert index.labels.tolist() == [label % 3 for label in labels]
    assert index.thumbnails.shape == (23, 8, 8, 3) and index.thumbnails.dtype == torch.uint8
    assert index.layer_shape("relu1") == (4, 12, 12) and index.layer_shape("relu2") == (5, 4, 4)
    assert index.receptive_field("relu2").size == (8, 8)
    pooled = build_index(small, images, ["relu1"], codes="relu2", thumbnails=0, progress=False)
    assert pooled.codes.shape == (23, 5) and pooled.thumbnails is None and pooled.labels is None


def test_merged_shards_equal_one_pass_exactly(small, images):
    whole = build_index(small, images, LAYERS, k=5, batch_size=4, progress=False)
    shards = [build_index(small, images[start:stop], LAYERS, k=5, batch_size=4, offset=start, progress=False)
              for start, stop in ((0, 8), (8, 16), (16, 23))]
    assert shards[1].ids.tolist() == list(range(8, 16))
    assert_same_index(Index.merge(shards[::-1]), whole)  # order of the list does not matter
    with pytest.raises(InputError, match="consecutive"):
        Index.merge([shards[0], shards[2]])
    other = Inspector(Small(seed=5))
    with pytest.raises(InputError, match="different model weights"):
        Index.merge([shards[0], build_index(other, images[8:16], LAYERS, k=5, offset=8, progress=False)])


def test_fewer_images_than_k(small, images):
    index = build_index(small, images[:3], ["relu2"], k=5, progress=False)
    assert len(index.top("relu2", 0)) == 3
    assert int(index.state_dict()["top"]["relu2"]["ids"][0, -1]) == NO_IMAGE


def test_save_load_round_trip_and_stale_index_refused(small, images, tmp_path):
    index = build_index(small, images, LAYERS, k=4, progress=False)
    path = tmp_path / "small.idx"
    index.save(path)
    loaded = Index.load(path, small, images)
    assert_same_index(loaded, index)
    assert loaded.top("relu1", 2) == index.top("relu1", 2)
    assert np.array_equal(loaded.image(5), index.image(5))

    other = Inspector(Small(seed=3))
    with pytest.raises(InputError, match="other model weights"):
        Index.load(path, other)
    with pytest.raises(InputError, match="differs from the one the index was built on"):
        Index.load(path, small, images.flip(0))
    # weights changed after building (a training step): the index says so
    with torch.no_grad():
        small.model.fc.bias.add_(1)
    with pytest.raises(InputError, match="changed since"):
        index.check()
    with pytest.raises(InputError, match="no index file"):
        Index.load(tmp_path / "missing.idx")
    (tmp_path / "junk.idx").write_bytes(b"not an index")
    with pytest.raises(InputError, match="cannot read"):
        Index.load(tmp_path / "junk.idx")


class Interrupting(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt when item `stop_at` is read (the first time), and counts reads."""

    def __init__(self, images: torch.Tensor, stop_at: int | None) -> None:
        self.images, self.stop_at, self.reads = images, stop_at, []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        self.reads.append(i)
        if i == self.stop_at:
            self.stop_at = None
            raise KeyboardInterrupt
        return self.images[i]


def test_resume_after_an_interruption(small, images, tmp_path):
    path = tmp_path / "resume.idx"
    dataset = Interrupting(images, stop_at=13)
    with pytest.raises(KeyboardInterrupt):
        build_index(small, dataset, LAYERS, k=5, batch_size=4, path=path, progress=False)
    partial = Index.load(path)
    assert not partial.complete and len(partial) == 12  # three whole batches of 4 were done
    dataset.reads.clear()
    resumed = build_index(small, dataset, LAYERS, k=5, batch_size=4, path=path, progress=False)
    assert sorted(i for i in dataset.reads if i >= 12) == list(range(12, 23))  # the rest, once each
    assert len([i for i in dataset.reads if i < 12]) <= HASH_CHECKS + 1  # earlier ones only to check their hashes
    assert_same_index(resumed, build_index(small, images, LAYERS, k=5, batch_size=4, progress=False))
    dataset.reads.clear()
    again = build_index(small, dataset, LAYERS, k=5, batch_size=4, path=path, progress=False)  # finished: no forward
    assert len(dataset.reads) <= HASH_CHECKS + 1 and again.complete
    with pytest.raises(InputError, match="other weights, layers or offset"):
        build_index(small, dataset, ["relu1"], k=5, path=path, progress=False)

@pytest.mark.parametrize("sparse_below", [0.0, 1.01], ids=["every-position-searched", "only-maxima-above-the-floor"])
def test_two_streams_build_the_index_of_one(small, images, two_threads, sparse_below, monkeypatch):
    """With two threads on the CPU the index runs two batches at once, one per thread, with a third queued in a
    slot of its own (the first batch alone), and merges them in order: the same index as one stream, ties (three
    equal images) included; the thread count is given back."""
    import threading

    monkeypatch.setattr(builder_module, "SPARSE_BELOW", dict.fromkeys(builder_module.SPARSE_BELOW, sparse_below))
    threads, slots, start = [], set(), builder_module._Stream.start

    def recording(stream, ids):
        threads.append(threading.current_thread().name.split("_")[0])
        slots.add(id(stream))
        start(stream, ids)

    monkeypatch.setattr(builder_module._Stream, "start", recording)
    two = build_index(small, images, LAYERS, k=3, batch_size=2, progress=False)
    assert threads[0] == "MainThread" and set(threads[1:]) == {"cnnwidgets-stream"} and len(threads) == 12
    assert len(slots) == 3
    assert torch.get_num_threads() == 2
    monkeypatch.setattr("cnnwidgets.backend.device.STREAMS", 1)
    threads.clear()
    one = build_index(small, images, LAYERS, k=3, batch_size=2, progress=False)
    assert set(threads) == {"MainThread"}
    assert_same_index(two, one)


class FailsOnMarkedImage(Small):
    """Fails once, on the batch holding an image whose first pixel is 99 (class-level flag: the index may run a
    copy of the model)."""

    armed = [False]

    def forward(self, x):
        if self.armed[0] and bool((x[:, 0, 0, 0] == 99).any()):
            self.armed[0] = False
            raise RuntimeError("the model failed on this batch")
        return super().forward(x)


def test_a_batch_failing_on_a_stream_counts_none_after_it(images, two_threads, tmp_path):
    """A batch that fails on a worker thread while the next one runs on the other: the saved index holds exactly
    the batches before it (not the later one that succeeded), the model is left as it came, and resuming gives the
    index of a run without failure."""
    marked = images.clone()
    marked[13, 0, 0, 0] = 99  # batch 3 of 4 images
    inspector, path = Inspector(FailsOnMarkedImage().train()), tmp_path / "streams.idx"
    before = model_state(inspector.model)
    FailsOnMarkedImage.armed[0] = True
    with pytest.raises(InputError, match="the model failed on this batch"):
        build_index(inspector, marked, LAYERS, k=5, batch_size=4, path=path, progress=False)
    assert_same_state(before, model_state(inspector.model))  # training flags back, no hook left, on the error path too
    assert hooks_left(inspector.model) == 0
    partial = Index.load(path)
    assert not partial.complete and len(partial) == 12
    assert torch.get_num_threads() == 2
    resumed = build_index(inspector, marked, LAYERS, k=5, batch_size=4, path=path, progress=False)
    assert_same_index(resumed, build_index(inspector, marked, LAYERS, k=5, batch_size=4, progress=False))



def test_datasets_of_every_kind(small, images, tmp_path):
    pictures = [PIL.Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)) for i in range(4)]
    for name, folder in (("cats", tmp_path / "cats"), ("dogs", tmp_path / "dogs")):
        folder.mkdir()
        for i, picture in enumerate(pictures):
            picture.save(folder / f"{name}{i}.png")
    inspector = Inspector(Small(), transform=lambda pil: torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 85)
    from_folder = build_index(inspector, tmp_path, ["relu2"], progress=False)
    assert len(from_folder) == 8 and from_folder.labels.tolist() == [0] * 4 + [1] * 4
    assert from_folder.label_names == ["cats", "dogs"]
    from_list = build_index(inspector, pictures, ["relu2"], progress=False)
    assert len(from_list) == 4 and from_list.labels is None
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(23)), batch_size=5)
    from_loader = build_index(small, loader, ["relu2"], progress=False)
    assert from_loader.labels.tolist() == list(range(23))
    assert from_loader.top("relu2", 1) == build_index(small, images, ["relu2"], progress=False).top("relu2", 1)
    dicts = [{"image": image, "label": 1} for image in images[:3]]
    assert build_index(small, dicts, ["relu2"], progress=False).labels.tolist() == [1, 1, 1]


def test_bad_input_says_what_to_pass(small, images):
    with pytest.raises(InputError, match="cannot index a int"):
        build_index(small, 5, progress=False)
    with pytest.raises(InputError, match="needs an .image. key"):
        build_index(small, [{"pixels": 1}], progress=False)
    with pytest.raises(InputError, match="cannot preprocess a str|no image file"):
        build_index(small, ["not an image"], progress=False)
    with pytest.raises(InputError, match="empty"):
        build_index(small, [], progress=False)
    with pytest.raises(InputError, match="unknown layer"):
        build_index(small, images, ["relu9"], progress=False)
    with pytest.raises(InputError, match="positive"):
        build_index(small, images, k=0, progress=False)
    with pytest.raises(InputError, match="single image"):
        build_index(small, np.zeros((12, 12, 3), np.uint8), progress=False)
    index = build_index(small, images, ["relu2"], progress=False)
    with pytest.raises(InputError, match="out of range"):
        index.top("relu2", 99)
    with pytest.raises(InputError, match="not in this index"):
        index.image(23)


def test_mixed_sizes_are_resized_with_a_note(small, images):
    mixed = [images[0], torch.nn.functional.interpolate(images[1:2], size=(16, 16))[0], images[2]]
    with pytest.warns(UserWarning, match="mixed sizes"):
        index = build_index(small, mixed, ["relu2"], progress=False)
    assert len(index) == 3


def test_the_model_is_left_as_it_was(images):
    model = Small().train()
    inspector = Inspector(model)
    before = model_state(model)
    build_index(inspector, images, LAYERS, progress=False)
    with pytest.raises(InputError):
        build_index(inspector, [images[0], "nope"], LAYERS, progress=False)
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0


def test_weights_fingerprint_follows_the_weights():
    a, b = Small(seed=0), Small(seed=0)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.conv1.weight[0, 0, 0, 0] += 1
    assert weights_fingerprint(a) != weights_fingerprint(b)
    with_buffers = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))  # 0-dim num_batches_tracked, float buffers
    assert len(weights_fingerprint(with_buffers)) == 32


def assert_same_index(a: Index, b: Index) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if key == "top":
            assert sa[key].keys() == sb[key].keys()
            for layer in sa[key]:
                for part in sa[key][layer]:
                    assert torch.equal(sa[key][layer][part], sb[key][layer][part]), (layer, part)
        elif isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
        else:
            assert sa[key] == sb[key], key


@pytest.mark.skipif(not hasattr(Inspector, "index"), reason="Inspector.index comes with the shared lines of issue 5")
def test_inspector_index_delegates(small, images):
    assert_same_index(small.index(images, LAYERS, k=5, progress=False), build_index(small, images, LAYERS, k=5, progress=False))


class Normed(nn.Module):
    """conv-BN-ReLU twice (float weights, BN statistics set): what the folded copy folds; counts its forwards."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(2)
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(6, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU()
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            for norm in (self.bn1, self.bn2):
                norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator))
                norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
                norm.weight.copy_(torch.randn(norm.num_features, generator=generator))
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        x = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


def maxima(inspector: Inspector, images: torch.Tensor, layer: str) -> torch.Tensor:
    """[N, C] maximum of every channel of `layer` for each image, from the model itself."""
    return torch.stack([inspector.activations(image, layer).flatten(1).amax(1) for image in images])


def test_the_index_runs_the_folded_copy_unless_a_folded_conv_is_tapped(images, monkeypatch):
    model = Normed()
    inspector = Inspector(model)
    index = build_index(inspector, images, ["relu1", "relu2"], k=23, batch_size=4, progress=False)
    assert model.forwards <= 5  # two probes (layer shapes, the stride bound) and the folded copy's checks, no batch
    for layer in ("relu1", "relu2"):
        expected = maxima(inspector, images, layer)
        for channel in range(expected.shape[1]):
            found = {image_id: value for image_id, value, _ in index.top(layer, channel)}
            got = torch.tensor([found[i] for i in range(len(images))])
            assert torch.allclose(got, expected[:, channel], rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(builder_module, "SPARSE_BELOW", dict.fromkeys(builder_module.SPARSE_BELOW, 1.01))  # past the first floor, only maxima above it
    best = build_index(inspector, images, ["relu1"], k=3, batch_size=4, progress=False)  # channels-last maps
    for channel in range(6):
        maps = torch.stack([inspector.activations(image, "relu1")[channel] for image in images])
        values, where = maps.flatten(1).max(1)
        order = sorted(range(len(images)), key=lambda i: (-float(values[i]), i))[:3]
        assert [(i, (int(where[i]) // 12, int(where[i]) % 12)) for i in order] == [
            (image_id, position) for image_id, _, position in best.top("relu1", channel)]
    model.forwards = 0
    tapped = build_index(inspector, images, ["conv2"], k=23, batch_size=4, progress=False)  # bn2 is folded into conv2
    assert model.forwards >= 6
    expected = maxima(inspector, images, "conv2")
    found = {image_id: value for image_id, value, _ in tapped.top("conv2", 3)}
    assert torch.allclose(torch.tensor([found[i] for i in range(len(images))]), expected[:, 3], rtol=1e-5, atol=1e-5)
    assert hooks_left(model) == 0


def test_worker_processes_build_the_same_index(small, images):
    assert_same_index(build_index(small, images, LAYERS, k=5, batch_size=4, num_workers=2, progress=False),
                      build_index(small, images, LAYERS, k=5, batch_size=4, progress=False))
    with pytest.raises(InputError, match="num_workers"):
        build_index(small, images, LAYERS, num_workers=-1, progress=False)


def test_mixed_precision_top_k_is_close_to_float32(images):
    inspector = Inspector(Normed())
    exact = build_index(inspector, images, ["relu2"], k=5, progress=False)
    mixed = build_index(inspector, images, ["relu2"], k=5, amp=True, progress=False)
    scale = float(exact.top_values("relu2").abs().max())
    assert torch.allclose(mixed.top_values("relu2"), exact.top_values("relu2"), rtol=0.02, atol=0.02 * scale)
    same_best = [mixed.top("relu2", c)[0][0] == exact.top("relu2", c)[0][0] for c in range(8)]
    assert sum(same_best) >= 7
    assert mixed.codes.dtype == torch.float32 and torch.allclose(mixed.codes, exact.codes, rtol=0.02, atol=0.02 * scale)


def test_receptive_fields_are_traced_on_first_use_not_while_indexing(small, images, monkeypatch):
    receptive_field = importlib.import_module("cnnwidgets.backend.receptive_field")
    traced = []
    original = receptive_field.receptive_fields
    monkeypatch.setattr(receptive_field, "receptive_fields", lambda *args, **kwargs: traced.append(args) or original(*args, **kwargs))
    index = build_index(small, images, LAYERS, progress=False)
    assert traced == [] and index.state_dict()["fields"] == {}
    assert index.receptive_field("relu2").size == (8, 8) and index.receptive_field("relu1").size == (3, 3)
    assert len(traced) == 1


@pytest.mark.parametrize("id_base", [0, 2**40, None], ids=["small ids", "big offset", "empty slots"])
def test_selection_order_is_two_stable_sorts(id_base):
    """`_select`'s packed-key `topk` gives the order of sorting by image id, then stably by activation descending:
    ties (0.0 and -0.0 included) to the lower id, -inf last, empty slots (NO_IMAGE) after every image."""
    from cnnwidgets.backend.index.value import _select

    generator = torch.Generator().manual_seed(0)
    pool = torch.tensor([0.0, -0.0, 1.0, -1.0, -torch.inf, torch.inf, 2.5, -3e38, 1e-45, -1e-45])
    values = pool[torch.randint(0, len(pool), (5, 40), generator=generator)]
    ids = torch.stack([torch.randperm(120, generator=generator)[:40] for _ in range(5)]) + (id_base or 0)
    if id_base is None:
        ids[:, -3:] = NO_IMAGE
        values[:, -3:] = -torch.inf
    rows = torch.randint(0, 9, (5, 40), generator=generator, dtype=torch.int32)
    order = torch.argsort(ids, dim=1, stable=True)
    expected = [t.gather(1, order) for t in (values, ids, rows)]
    order = torch.argsort(expected[0], dim=1, descending=True, stable=True)[:, :12]
    expected = [t.gather(1, order) for t in expected]
    for got, want in zip(_select(values, ids, rows, k=12), expected):
        assert torch.equal(got, want)
    assert torch.equal(_select(values, ids, rows, k=12)[0].signbit(), expected[0].signbit())


def test_image_hashes_are_fixed_per_content_and_tell_one_bit_apart():
    from cnnwidgets.backend.index.datasets import image_hash, image_hashes

    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4) / 7
    # pinned: an index saved today must still recognise its dataset tomorrow
    assert image_hashes(images).tolist() == [3130970156133736292, 6307996918473531303]
    assert image_hash(images[1]) == int(image_hashes(images)[1]) and image_hashes(images).min() >= 0
    flipped = images[0].clone()
    flipped.view(torch.int32)[1, 2, 3] ^= 1  # the lowest mantissa bit of one value
    assert image_hash(flipped) != image_hash(images[0])
    assert image_hash(images[0].to(torch.float64)) == image_hash(images[0])  # the float32 values are what is hashed
    assert len(set(image_hashes(torch.randn(500, 3, 8, 8, generator=torch.Generator().manual_seed(0))).tolist())) == 500
    # the CPU's compiled sums equal PyTorch's (what a GPU runs), special values and channels-last batches included
    from cnnwidgets.backend.index.datasets import LOW_63_BITS, _hash_multipliers

    odd = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 1e30
    odd[0, 0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    for batch in (odd, odd.contiguous(memory_format=torch.channels_last)):
        bits = batch.contiguous().reshape(3, -1).view(torch.int32).to(torch.int64)
        assert torch.equal(image_hashes(batch), (bits * _hash_multipliers(bits.shape[1], bits.device)).sum(1) & LOW_63_BITS)


def _maps_with_ties_and_nan(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random maps where map (1, 2) holds two NaN, map (2, 1) is constant (every position ties), and map (0, 0) has
    its maximum twice."""
    maps = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    maps[1, 2].view(-1)[[1, -1]] = float("nan")
    maps[2, 1] = 5.0
    maps[0, 0].view(-1)[[2, -2]] = 9.0
    return maps


LAYOUTS = {
    "contiguous": lambda maps: maps,
    "channels-last": lambda maps: maps.contiguous(
        memory_format=torch.channels_last if maps.dim() == 4 else torch.channels_last_3d),
    "strided": lambda maps: torch.cat([maps, maps], -1)[..., :maps.shape[-1]],  # neither: PyTorch's search
    "float64": lambda maps: maps.double(),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(3, 16, 12, 12), (3, 24, 7, 7), (3, 40, 8, 8), (3, 3, 5, 5), (3, 120, 4, 4),
                                   (3, 96, 2, 2), (3, 5, 4, 6, 6)], ids=str)
def test_searched_maxima_and_positions_equal_torch_max(shape, layout):
    """The compiled searches (`backend.index.maxima`) give what `torch.max(dim)` gives, ties (first position) and NaN
    (the first NaN) included, in every layout: in place for float32 channels-last and contiguous maps, by PyTorch
    for the rest."""
    from cnnwidgets.backend.index.maxima import channel_amax, channel_maxima, positions_of

    maps = LAYOUTS[layout](_maps_with_ties_and_nan(shape, seed=sum(shape)))
    expected_values, expected_where = maps.flatten(2).max(2)
    expected_values = expected_values.float()
    values, where = channel_maxima(maps)
    assert torch.equal(values.nan_to_num(-7.0), expected_values.nan_to_num(-7.0)) and torch.equal(where, expected_where)
    assert bool(values[1, 2].isnan()) and int(where[0, 0]) == 2
    assert torch.equal(channel_amax(maps).nan_to_num(-7.0), expected_values.nan_to_num(-7.0))
    chosen = torch.rand(values.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    chosen[1, 2] = chosen[2, 1] = chosen[0, 0] = True
    found = positions_of(maps, channel_amax(maps), chosen)
    assert torch.equal(found, torch.where(chosen, expected_where, 0))


def test_in_place_merge_keeps_the_order_of_select():
    """`topk.merge_into`, batch by batch into k slots per row, gives `_select`'s top-k of all candidates at once:
    activation descending, ties to the lower image id, NaN as -inf, -0.0 equal to 0.0, fewer than k images leaving
    empty slots."""
    from cnnwidgets.backend.index.topk import empty_table, merge_into
    from cnnwidgets.backend.index.value import _select

    generator = torch.Generator().manual_seed(3)
    rows, k = 7, 5
    values = torch.randint(-3, 4, (23, rows), generator=generator).float()  # many ties
    values[4, 0], values[9, 1], values[2, 2], values[5, 2] = float("nan"), -torch.inf, -0.0, 0.0
    values[:, 6] = float("nan")  # a row of NaN only
    where = torch.randint(0, 100, (23, rows), generator=generator)
    ids = torch.arange(10, 33)
    top = empty_table(rows, k)
    for start in range(0, 23, 4):
        merge_into(top, values[start:start + 4], ids[start:start + 4], where[start:start + 4])
    expected = _select(values.T.nan_to_num(nan=-torch.inf), ids.expand(rows, -1), where.T, k=k)
    assert torch.equal(top["values"], expected[0]) and torch.equal(top["ids"], expected[1])
    assert torch.equal(top["where"], expected[2])
    assert torch.equal(top["kth"], top["values"][:, -1])
    few = empty_table(rows, k)
    merge_into(few, values[:3], ids[:3], where[:3])
    assert torch.equal(few["ids"][:, 3:], torch.full((rows, 2), NO_IMAGE)) and bool((few["ids"][:, :3] < NO_IMAGE).all())


@pytest.mark.parametrize("track", [True, False], ids=["positions-in-the-pass", "positions-of-those-that-enter"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(3, 16, 12, 12), (3, 40, 8, 8), (3, 3, 5, 5), (3, 120, 4, 4), (3, 96, 1, 1),
                                   (3, 5, 4, 6, 6)], ids=str)
def test_taking_maps_into_the_table_equals_searching_then_merging(shape, layout, track):
    """`topk.take_into` (one compiled pass per layer and batch) and `topk.commit` leave the table that
    `maxima.channel_maxima` and `topk.merge_into` leave, batch after batch: ties to the first position and the
    lower id, NaN ranked as -inf at its first NaN; layouts it cannot read in place are left to those two."""
    from cnnwidgets.backend.index.maxima import channel_maxima, rows_of
    from cnnwidgets.backend.index.topk import Pending, commit, empty_table, merge_into, table_views, take_into

    k = 4
    taken, merged = empty_table(shape[1], k), empty_table(shape[1], k)
    for batch in range(4):  # 12 images: the first fill the table, the later ones must beat its floor
        one_position = shape[2:] == (1, 1)  # squeeze-excitation maps; no room for the ties and NaN of the others
        maps = LAYOUTS[layout](torch.randn(shape) if one_position else _maps_with_ties_and_nan(shape, seed=batch))
        if batch == 3:
            maps = maps.clone().fill_(9.0) if layout != "float64" else maps  # ties with earlier images' maxima
        ids = np.arange(3 * batch, 3 * batch + 3, dtype=np.int64)
        rows = rows_of(maps.numpy())
        if layout in ("strided", "float64"):
            assert rows is None
            return
        pending = Pending()
        entered = take_into(table_views(taken), 0, rows, ids, track, pending)
        assert torch.equal(taken["ids"], merged["ids"])  # nothing enters before `commit` (an interrupted pass)
        commit(table_views(taken), pending)
        values, where = channel_maxima(maps)
        merge_into(merged, values, torch.from_numpy(ids), where)
        assert 0 < entered <= 1
        for key in ("values", "ids", "where", "kth"):
            assert torch.equal(taken[key], merged[key]), (batch, key)
    assert bool((taken["ids"] < NO_IMAGE).all())


@pytest.mark.parametrize("track", [True, False], ids=["positions-in-the-pass", "positions-of-those-that-enter"])
@pytest.mark.parametrize("layout", ["contiguous", "channels-last"])
def test_capped_maxima_equal_to_a_full_rows_kth_are_not_taken(layout, track):
    """A capped activation (ReLU6 at 6) gives most maps the same maximum: once a row holds k images at the cap, a
    later image at the cap cannot enter (the tie goes to the lower id), so `take_into` keeps none of them (it kept
    every one, and the index then searched every map in full on every batch), while an earlier image at the cap
    (a lower id) still enters; the table stays what `merge_into` leaves."""
    from cnnwidgets.backend.index.maxima import channel_maxima, rows_of
    from cnnwidgets.backend.index.topk import Pending, commit, empty_table, merge_into, table_views, take_into

    k, shape = 4, (3, 40, 6, 6)
    taken, merged = empty_table(shape[1], k), empty_table(shape[1], k)
    generator = torch.Generator().manual_seed(0)
    for first_id, expected in ((10, 1.0), (13, 1.0), (16, 0.0), (3, 1.0)):  # 16-18 tie at the k-th; 3-5 come first
        maps = torch.rand(shape, generator=generator).mul(8).clamp(max=6.0)  # every map reaches the cap
        maps[:, :, 0, 0] = 6.0
        maps = LAYOUTS[layout](maps)
        ids = np.arange(first_id, first_id + 3, dtype=np.int64)
        pending = Pending()
        entered = take_into(table_views(taken), 0, rows_of(maps.numpy()), ids, track, pending)
        commit(table_views(taken), pending)
        values, where = channel_maxima(maps)
        merge_into(merged, values, torch.from_numpy(ids), where)
        assert entered == pytest.approx(expected)
        for key in ("values", "ids", "where", "kth"):
            assert torch.equal(taken[key], merged[key]), (first_id, key)
    assert bool((taken["ids"] == torch.tensor([3, 4, 5, 10])).all())


class ConvBnRelu(nn.Module):
    """torchvision GoogLeNet's BasicConv2d: the ReLU is a function, so no module's output is an activation layer."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class FunctionalRelus(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = ConvBnRelu(3, 4)
        self.pool = nn.MaxPool2d(2)
        self.block2 = ConvBnRelu(4, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.block2(self.pool(self.block1(x))).mean((2, 3)))


def test_default_layers_of_a_model_with_functional_activations_are_its_blocks(monkeypatch):
    # the maps after the ReLUs are the blocks' outputs; their convolutions and batch norms come before the ReLU, and
    # leaving the convolutions out lets the index run the folded copy (torchvision GoogLeNet: 0.37× a bare forward
    # with its 57 convolutions tapped, as the model itself ran)
    from cnnwidgets.backend.folded import ChannelsLast
    from cnnwidgets.backend.index import default_layers

    torch.manual_seed(0)
    model = FunctionalRelus().eval()
    inspector = Inspector(model, transform=lambda image: image)
    assert default_layers(inspector) == ["block1", "pool", "block2"]
    assert default_layers(Inspector(Small().eval(), transform=lambda image: image)) == LAYERS
    ran = []
    real = builder_module._index_model
    monkeypatch.setattr(builder_module, "_index_model", lambda *args: ran.append(real(*args)) or ran[-1])
    images = torch.randn(20, 3, 12, 12)
    index = build_index(inspector, images, progress=False, thumbnails=0)
    assert isinstance(ran[0], ChannelsLast)
    assert index.layers == ["block1", "pool", "block2"]
    with torch.no_grad():  # the folded copy's maxima are the model's, up to rounding
        expected = torch.relu(model.block1.bn(model.block1.conv(images))).amax((2, 3)).max(0).values
    best = torch.tensor([index.top("block1", channel)[0][1] for channel in range(4)])
    torch.testing.assert_close(best, expected, atol=1e-5, rtol=1e-5)


COMPILED_SEARCHES = """
import numpy as np, torch
from cnnwidgets.backend.index.datasets import image_hashes
from cnnwidgets.backend.index.maxima import channel_amax, channel_maxima, positions_of, rows_of
from cnnwidgets.backend.index.topk import Pending, commit, empty_table, merge_into, table_views, take_into

maps = torch.rand(2, 40, 6, 6).contiguous(memory_format=torch.channels_last)
values, where = channel_maxima(maps)
positions_of(maps, channel_amax(maps), values > 0.5)
table = empty_table(40, 4)
merge_into(table, values, torch.arange(2), where)
for track in (True, False):
    pending = Pending()
    take_into(table_views(table), 0, rows_of(maps.numpy()), np.arange(2, 4), track, pending)
    commit(table_views(table), pending)
image_hashes(maps)
"""


def test_the_compiled_searches_are_compiled_once_and_then_loaded_from_disk(tmp_path):
    """numba caches a compiled loop on disk only when it calls no other compiled function made at run time: the
    top-k merge did, so every process compiled it anew (0.15–0.4 s of every first index) and added a file to its
    cache. A second process must find every loop in the cache and write nothing."""
    import subprocess
    import sys

    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    files = []
    for _ in range(2):
        subprocess.run([sys.executable, "-c", COMPILED_SEARCHES], env=environment, check=True, timeout=300)
        files.append(sorted(path.name for path in tmp_path.rglob("*") if path.is_file()))
    assert len([name for name in files[0] if name.endswith(".nbc")]) == 5  # take, commit, two searches, the hash
    assert files[1] == files[0]
