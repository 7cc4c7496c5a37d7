"""methods.occlusion: equals a brute-force loop and Captum's Occlusion; bad input gives clear errors."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import Inspector, InputError
from cnnwidgets.backend import incremental
from cnnwidgets.methods.occlusion import (
    centered_box,
    fill_image,
    grid_boxes,
    occluded_channel_sums,
    occluded_logits,
    occlusion,
    occlusion_progressive,
)

from tests.conftest import assert_same_state, hooks_left, model_state

occlusion_module = importlib.import_module("cnnwidgets.methods.occlusion")  # the package exports a function of that name


class SmallCNN(nn.Module):
    """3×24×24 -> conv pad 1 -> ReLU -> max pool -> conv stride 2 -> residual-free head; 6 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8 * 6 * 6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


@pytest.fixture(scope="module")
def small():
    return Inspector(SmallCNN().eval())


@pytest.fixture(scope="module")
def small_input():
    return torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))


def brute_force(model, x, target, patch, stride, fill_value=0.0):
    """Occlude, forward, softmax, one position at a time."""
    ny, nx = (x.shape[2] - patch) // stride + 1, (x.shape[3] - patch) // stride + 1
    grid = torch.zeros(ny, nx)
    with torch.inference_mode():
        for i in range(ny):
            for j in range(nx):
                occluded = x.clone()
                occluded[..., i * stride:i * stride + patch, j * stride:j * stride + patch] = fill_value
                grid[i, j] = model(occluded).softmax(-1)[0, target]
    return grid


@pytest.mark.parametrize("method", ["incremental", "full"])
@pytest.mark.parametrize(("patch", "stride"), [(6, 2), (5, 3), (24, 1), (1, 5)])
def test_small_cnn_equals_brute_force(small, small_input, method, patch, stride):
    got = occlusion(small, small_input, target=2, patch=patch, stride=stride, method=method, progress=False)
    torch.testing.assert_close(got, brute_force(small.model, small_input, 2, patch, stride), atol=1e-6, rtol=0)


def test_tiny_cnn_with_hand_set_weights(tiny, tiny_input):
    inspector = Inspector(tiny)
    for method in ("incremental", "full"):
        got = occlusion(inspector, tiny_input, target=1, patch=2, stride=1, fill=-3.0, method=method, progress=False)
        torch.testing.assert_close(got, brute_force(tiny, tiny_input, 1, 2, 1, -3.0), atol=1e-6, rtol=0)


def test_lite0_positions_equal_brute_force(lite0, cat):
    batch = lite0.preprocess(cat)
    boxes = [(0, 0, 32, 32), (96, 96, 128, 128), (192, 0, 224, 32), (40, 192, 72, 224)]
    got = occluded_logits(lite0, batch, boxes).softmax(-1)
    occluded = batch.expand(len(boxes), -1, -1, -1).clone()
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        occluded[n, :, y0:y1, x0:x1] = 0.0
    with torch.inference_mode():
        expected = lite0.model(occluded).softmax(-1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_lite0_grid_and_logits(lite0, cat):
    probability = occlusion(lite0, cat, patch=112, stride=56, progress=False)
    full = occlusion(lite0, cat, patch=112, stride=56, method="full", progress=False)
    assert probability.shape == (3, 3)
    torch.testing.assert_close(probability, full, atol=1e-4, rtol=0)
    logits = occlusion(lite0, cat, "tiger cat", patch=112, stride=56, output="logit", progress=False)
    assert logits.shape == (3, 3) and (logits.abs() > 1e-3).all()


def test_attribution_equals_captum(small, small_input):
    from captum.attr import Occlusion

    def forward(x):
        return small.model(x).softmax(-1)

    for patch, stride in ((6, 2), (8, 4)):
        expected = Occlusion(forward).attribute(small_input, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride),
                                                baselines=0.0, target=4, perturbations_per_eval=4)
        got = occlusion(small, small_input, target=4, patch=patch, stride=stride, output="attribution", progress=False)
        assert got.shape == (24, 24)
        for channel in range(3):
            torch.testing.assert_close(got, expected[0, channel].float(), atol=1e-6, rtol=1e-5)


def test_attribution_equals_captum_on_lite0(lite0, cat):
    from captum.attr import Occlusion

    batch = lite0.preprocess(cat)
    target = lite0.class_index(None, batch)
    expected = Occlusion(lambda x: lite0.model(x).softmax(-1)).attribute(
        batch, sliding_window_shapes=(3, 112, 112), strides=(3, 56, 56), baselines=0.0, target=target, perturbations_per_eval=4)
    got = occlusion(lite0, batch, patch=112, stride=56, output="attribution", progress=False)
    torch.testing.assert_close(got, expected[0, 0].float(), atol=1e-4, rtol=0)


def test_fills(small, small_input):
    mean = fill_image(small_input, "mean")
    assert torch.allclose(mean[0, :, 5, 7], small_input.mean((2, 3))[0])
    blur = fill_image(small_input, "blur", patch=8)
    assert blur.shape == small_input.shape and blur.std() < small_input.std()
    colour = fill_image(small_input, torch.tensor([1.0, 2.0, 3.0]))
    assert colour[0, :, 3, 3].tolist() == [1.0, 2.0, 3.0]
    for fill in ("mean", "blur", torch.tensor([1.0, 2.0, 3.0]), torch.randn(3, 24, 24)):
        pictured = fill_image(small_input, fill, 6)
        got = occlusion(small, small_input, target=0, patch=6, stride=3, fill=fill, progress=False)
        boxes = grid_boxes((24, 24), 6, 3)
        occluded = small_input.expand(len(boxes), -1, -1, -1).clone()
        for n, (y0, x0, y1, x1) in enumerate(boxes):
            occluded[n, :, y0:y1, x0:x1] = pictured[0, :, y0:y1, x0:x1]
        with torch.inference_mode():
            expected = small.model(occluded).softmax(-1)[:, 0].reshape(got.shape)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patch": 25}, "larger than the 24×24"),
    ({"stride": 0}, "at least 1"),
    ({"stride": -2}, "at least 1"),
    ({"patch": 4.5}, "whole number"),
    ({"fill": torch.zeros(2)}, r"fill of shape \(2,\)"),
    ({"fill": torch.zeros(3, 5, 5)}, "does not fit"),
    ({"fill": "grey"}, "unknown"),
    ({"fill": float("nan")}, "finite"),
    ({"output": "probabilities"}, "output must be"),
    ({"method": "fast"}, "method must be"),
    ({"target": 6}, "out of range"),
])
def test_bad_input_is_a_one_line_input_error(small, small_input, kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        occlusion(small, small_input, **{"target": 0, "patch": 6, "stride": 3, "progress": False, **kwargs})
    assert "\n" not in str(info.value)


def test_boxes_outside_the_image_are_rejected(small, small_input):
    with pytest.raises(InputError, match="not inside"):
        occluded_logits(small, small_input, [(20, 20, 30, 30)])
    assert centered_box(23, 0, 8, (24, 24)) == (19, 0, 24, 4)


def test_model_is_left_as_it_was(small_input):
    model = SmallCNN()
    model.train()
    before = model_state(model)
    inspector = Inspector(model)
    occlusion(inspector, small_input, target=1, patch=6, stride=3, progress=False)
    list(occluded_channel_sums(inspector, small_input, "features.1", 2, [(0, 0, 6, 6)]))
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0


def test_progressive_maps_fill_coarse_to_fine(small, small_input):
    steps = []
    for maps in occlusion_progressive(small, small_input, target=3, patch=6, stride=2, batch_size=5):
        steps.append((maps.level, maps.done.copy(), maps.preview(maps.probability)))
    final = occlusion(small, small_input, target=3, patch=6, stride=2, progress=False)
    ny, nx = final.shape
    level, done, preview = steps[0]
    assert level == 4 and done.sum() == 5 and not np.isnan(preview).any()
    coarse = [s for s in steps if s[0] == 4][-1][1]
    assert coarse.sum() == len(range(0, ny, 4)) * len(range(0, nx, 4))
    assert steps[-1][1].all()
    np.testing.assert_allclose(steps[-1][2], final.numpy(), atol=1e-6)


def test_top_label_and_channel_maps(small, small_input):
    last = None
    for last in occlusion_progressive(small, small_input, target=0, patch=8, stride=4):
        pass
    boxes = grid_boxes((24, 24), 8, 4)
    logits = occluded_logits(small, small_input, boxes)
    np.testing.assert_array_equal(last.top_index.ravel(), logits.argmax(-1).numpy())
    sums = torch.cat(list(occluded_channel_sums(small, small_input, "features.1", 5, boxes, batch_size=7)))
    occluded = small_input.expand(len(boxes), -1, -1, -1).clone()
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        occluded[n, :, y0:y1, x0:x1] = 0
    with torch.inference_mode():
        expected = small.model.features[:2](occluded)[:, 5].sum((1, 2))
    torch.testing.assert_close(sums, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("method", ["incremental", "full"])
def test_two_streams_give_the_map_of_one(small_input, method, two_threads, monkeypatch):
    """With two threads on the CPU, full forwards run two chunks of positions at once (`device.STREAMS`), one per
    thread, and the incremental engine one at a time: the map of one stream and of brute force; PyTorch's thread
    count and the model's training flags come back as they were (eval mode is entered once around both streams,
    not by each)."""
    import threading

    inspector = Inspector(SmallCNN().train())
    names, real = [], occlusion_module._chunk_logits

    def recording(*args):
        names.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(occlusion_module, "_chunk_logits", recording)
    options = {"target": 1, "patch": 6, "stride": 3, "batch_size": 4, "method": method, "progress": False}
    two = occlusion(inspector, small_input, **options)
    # full: six pairs of chunks on the stream threads, the thirteenth chunk alone on this one
    assert {name.split("_")[0] for name in names} == ({"cnnwidgets-stream", "MainThread"} if method == "full" else {"MainThread"})
    assert len(names) == 13  # 49 positions in chunks of 4
    assert torch.get_num_threads() == 2 and all(module.training for module in inspector.model.modules())
    monkeypatch.setattr("cnnwidgets.backend.device.STREAMS", 1)
    names.clear()
    one = occlusion(inspector, small_input, **options)
    assert set(names) == {"MainThread"}
    torch.testing.assert_close(two, one, atol=1e-6, rtol=0)
    torch.testing.assert_close(two, brute_force(inspector.model, small_input, 1, 6, 3), atol=1e-6, rtol=0)


def test_out_of_memory_retries_with_smaller_batches(small, small_input, monkeypatch):
    real = occlusion_module._chunk_logits
    sizes = []

    def flaky(runner, batch, filled, chunk):
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(runner, batch, filled, chunk)

    monkeypatch.setattr(occlusion_module, "_chunk_logits", flaky)
    monkeypatch.setattr("cnnwidgets.backend.device.STREAMS", 1)  # one chunk at a time, as on a GPU
    with pytest.warns(UserWarning, match="retrying occlusion with batches of 2"):
        got = occlusion(small, small_input, target=1, patch=6, stride=3, batch_size=8, method="full", progress=False)
    torch.testing.assert_close(got, brute_force(small.model, small_input, 1, 6, 3), atol=1e-6, rtol=0)
    assert sizes[:3] == [8, 4, 2]


def test_auto_falls_back_to_full_forwards_when_the_engine_cannot_be_used(small, small_input, monkeypatch):
    def unsupported(model, example, positions=None):
        raise incremental.UnsupportedModel("cannot trace")

    monkeypatch.setattr(occlusion_module, "engine_for", unsupported)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = occlusion(small, small_input, target=1, patch=6, stride=3, progress=False)
    torch.testing.assert_close(got, brute_force(small.model, small_input, 1, 6, 3), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="method='full'"):
        occlusion(small, small_input, target=1, patch=6, stride=3, method="incremental", progress=False)


class GatedEarly(nn.Module):
    """A global gate right after a light stem (squeeze-excitation style): every later map changes with any occluder,
    so the engine can save at most the stem's share of the work (8 %)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Linear(8, 8)
        self.body = nn.Conv2d(8, 32, 3, padding=1)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x * torch.sigmoid(self.gate(x.mean((2, 3))))[:, :, None, None]
        return self.head(torch.relu(self.body(x)).mean((2, 3)))


@pytest.mark.parametrize(("model", "engine_used"), [(GatedEarly, False), (SmallCNN, True)])
def test_auto_uses_the_engine_only_where_it_saves_work(small_input, monkeypatch, model, engine_used):
    torch.manual_seed(0)
    inspector = Inspector(model().eval(), transform=lambda image: image)
    monkeypatch.setattr(incremental, "ENGINE_PAYS_AFTER", 0)
    calls = []
    monkeypatch.setattr(incremental.IncrementalEngine, "logits",
                        lambda self, boxes, fill, _logits=incremental.IncrementalEngine.logits: calls.append(1) or _logits(self, boxes, fill))
    got = occlusion(inspector, small_input, target=1, patch=6, stride=3, progress=False)
    engine = incremental.engine_for(inspector.memo, small_input)
    assert (engine.saving >= occlusion_module.ENGINE_MIN_SAVING) == engine_used
    assert (len(calls) > 1) == engine_used  # verify's own call, then the occlusion's batches where the engine is used
    torch.testing.assert_close(got, brute_force(inspector.model, small_input, 1, 6, 3), atol=1e-6, rtol=0)
