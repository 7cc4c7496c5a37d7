"""The Inspector's one memo (`backend.cache.Memo`): keyed by weights and image, bounded by bytes, emptied when a
weight changes; no module keeps a cache of its own."""

from __future__ import annotations

import importlib
import pkgutil
import weakref

import pytest
import torch
from torch import nn

import cnnwidgets
import cnnwidgets.backend
import cnnwidgets.methods
from cnnwidgets import Inspector
from cnnwidgets.backend import gradients as backend_gradients
from cnnwidgets.backend.cache import Memo, graph_bytes, image_key, weights_key
from cnnwidgets.methods import cam, gradients
from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")


def test_no_module_keeps_a_cache_of_its_own():
    # every cache lives in an Inspector's memo: no module-level dict keyed by models or inspectors
    names = [info.name for package in (cnnwidgets.backend, cnnwidgets.methods)
             for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]
    assert "cnnwidgets.backend.gradients" in names and "cnnwidgets.backend.incremental" in names
    for name in names:
        module = importlib.import_module(name)
        weak = [key for key, value in vars(module).items() if isinstance(value, (weakref.WeakKeyDictionary, weakref.WeakValueDictionary))]
        assert not weak, f"{name} keeps {weak}"


def test_a_weight_changed_in_place_makes_every_kind_of_entry_miss(tiny, tiny_input):
    inspector = Inspector(tiny)
    before = model_state(tiny)
    first_activation = inspector.activations(tiny_input, "conv")
    first_forward = backend_gradients.input_forward(inspector, inspector.preprocess(tiny_input))
    first_scores = cam.score_cam_scores(inspector, tiny_input, "relu", progress=False)
    assert inspector.activations(tiny_input, "conv") is first_activation
    assert backend_gradients.input_forward(inspector, inspector.preprocess(tiny_input)) is first_forward
    assert cam.score_cam_scores(inspector, tiny_input, "relu", progress=False) is first_scores
    # two activations, the input forward and its graph's measured size, the scores, and the note that these weights
    # were scored once
    assert len(inspector.memo) == 6 and inspector.memo.get(("activation", "relu"), tiny_input) is not None
    assert_same_state(before, model_state(tiny))

    key = inspector.weights_key()
    with torch.no_grad():
        tiny.conv.bias[1] += 1.0  # an in-place change, as an optimizer step makes
    assert inspector.weights_key() != key
    assert inspector.memo.get(("activation", "conv"), tiny_input) is None and len(inspector.memo) == 0
    again = inspector.activations(tiny_input, "conv")
    assert again is not first_activation and float(again[1, 0, 0]) == float(first_activation[1, 0, 0]) + 1
    assert backend_gradients.input_forward(inspector, inspector.preprocess(tiny_input)) is not first_forward
    assert cam.score_cam_scores(inspector, tiny_input, "relu", progress=False) is not first_scores


def test_the_same_image_hits_whatever_tensor_carries_it(tiny, tiny_input):
    inspector = Inspector(tiny)
    kept = inspector.activations(tiny_input, "relu")
    assert inspector.activations(tiny_input.clone(), "relu") is kept
    assert inspector.activations(tiny_input + 1, "relu") is not kept
    assert image_key(tiny_input) == image_key(tiny_input.clone().contiguous(memory_format=torch.channels_last))
    assert image_key(tiny_input) != image_key(tiny_input.double())
    assert image_key(tiny_input) != image_key(tiny_input.view(1, 1, 2, 8))


def test_class_switches_reuse_the_kept_forward_and_the_model_is_left_as_it_was(tiny, tiny_input, monkeypatch):
    inspector = Inspector(tiny)
    before = model_state(tiny)
    built = []
    real = backend_gradients.InputForward
    monkeypatch.setattr(backend_gradients, "InputForward", lambda *args: built.append(1) or real(*args))
    maps = [gradients.saliency(inspector, tiny_input, target) for target in (0, 1, 2, 1)]
    assert len(built) == 1
    torch.testing.assert_close(maps[1], maps[3])
    assert hooks_left(tiny) == 0
    assert_same_state(before, model_state(tiny))


def test_graph_bytes_counts_saved_tensors_once_and_not_the_weights():
    weight = nn.Parameter(torch.randn(4, 4))
    x = torch.randn(1, 1, 4, 4, requires_grad=True)  # 64 bytes
    y = x * weight  # MulBackward saves x and the weight
    z = y * x  # saves y (64 bytes) and x again
    score = z.sum()  # a 4-byte scalar
    assert graph_bytes([score], [weight]) == 4 + 64 + 64
    assert graph_bytes([score]) == 4 + 64 + 64 + 64


def test_kept_forwards_count_in_the_byte_budget(tiny):
    inspector = Inspector(tiny, cache_bytes=4096)
    images = [torch.full((1, 1, 4, 4), float(i)) for i in range(40)]
    for image in images:
        gradients.saliency(inspector, image, 1)
    assert 0 < inspector.memo.bytes <= inspector.memo.max_bytes
    kept = [image for image in images if inspector.memo.get(("input forward", None), image) is not None]
    forward = inspector.memo.get(("input forward", None), images[-1])
    size = graph_bytes([forward.scores, forward.input], tiny.parameters())
    assert size > 0 and len(kept) == inspector.memo.max_bytes // size  # as many as fit, the newest
    assert kept == images[-len(kept):]


def test_entries_of_no_size_stay_while_sized_ones_are_evicted(tiny):
    memo = Memo(tiny, max_bytes=3 * 64)
    memo.put("scoring model", tiny, nbytes=0)
    for i in range(10):
        memo.put(("activation", "conv"), torch.zeros(16), image=torch.full((1,), float(i)))
    assert memo.get("scoring model") is tiny and memo.bytes == 3 * 64 and len(memo) == 4
    memo.put("too big", torch.zeros(100))
    assert memo.get("too big") is None and memo.bytes <= memo.max_bytes
    memo.discard("activation")
    assert len(memo) == 1 and memo.bytes == 0


def test_one_weights_key_for_the_inspector_and_its_memo(tiny):
    inspector = Inspector(tiny)
    key = inspector.weights_key()
    assert key == weights_key(tiny) == inspector.memo.weights_key()
    inspector.memo.put("marker", torch.zeros(1))
    tiny.conv.weight = nn.Parameter(tiny.conv.weight.detach().clone())  # replaced, not modified
    assert inspector.weights_key() != key and inspector.memo.get("marker") is None
    assert inspector.input_shape is None
    inspector.preprocess(torch.zeros(1, 1, 4, 4))
    assert inspector.input_shape == (1, 1, 4, 4)


def test_a_private_copy_has_a_memo_of_its_own_with_the_same_budget_and_layouts(tiny, tiny_input):
    inspector = Inspector(tiny, cache_bytes=12345, reshape={"relu": "nhwc"})  # read as channels-last on purpose
    inspector.activations(tiny_input, "relu")
    private = inspector.private_copy()
    assert private.memo is not inspector.memo and len(private.memo) == 0 and private.memo.max_bytes == 12345
    torch.testing.assert_close(private.activations(tiny_input, "relu"), inspector.activations(tiny_input, "relu"))
    assert private.reshape == {"relu": "nhwc"} and private.layer("relu").layout.kind == "nhwc"


def test_a_value_that_is_not_tensors_must_say_its_size(tiny):
    memo = Memo(tiny, max_bytes=1024)
    with pytest.raises(TypeError, match="nbytes="):
        memo("graph", lambda: object())
    assert memo(("scores", "conv"), lambda: (torch.zeros(4), {"more": torch.zeros(2)})) is not None and memo.bytes == 24


def test_a_graphs_size_is_measured_once_per_kind_and_input_shape(tiny, monkeypatch):
    inspector = Inspector(tiny)
    measured = []
    real = backend_gradients.graph_bytes
    monkeypatch.setattr(backend_gradients, "graph_bytes", lambda *args: measured.append(1) or real(*args))
    for value in range(3):
        gradients.saliency(inspector, torch.full((1, 1, 4, 4), float(value)), 1)
    assert len(measured) == 1
    gradients.guided_backprop(inspector, torch.zeros(1, 1, 4, 4), 1)  # another graph: the guided rule's
    assert len(measured) == 2
    first = inspector.memo.get(("input forward", None), torch.zeros(1, 1, 4, 4))
    assert inspector.memo.get(("graph bytes", "input forward", None, (1, 1, 4, 4))) == real([first.scores, first.input], tiny.parameters())
