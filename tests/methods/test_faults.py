"""Faults: an exception or a KeyboardInterrupt from inside the model's forward, at the first, a middle or the last
forward of a long call, leaves no hook, every `training` flag and weight as it was, and no poisoned cache (the
next call gives the uninterrupted answer); an interrupted index resumes to exactly the uninterrupted one; floods
of widget changes keep memory bounded and end on the last request."""

from __future__ import annotations

import gc
import warnings
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import InputError, Inspector, LayerExplorer, OcclusionSlider
from cnnwidgets import methods as M
from cnnwidgets.backend.index import build_index
from cnnwidgets.backend.preprocess import Preprocess
from cnnwidgets.methods.activations import scale_maps

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test

PICTURE = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)


class Tripwire(nn.Module):
    """The identity, except that the `fail_at`-th call (counted from `arm`) raises `error`, once. The count is
    shared by every copy (the folded scoring copy an Inspector makes is a deep copy), so faults reach them too."""

    state: ClassVar[dict] = {"calls": 0, "fail_at": None, "error": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trip = Tripwire.state
        trip["calls"] += 1
        if trip["calls"] == trip["fail_at"]:
            raise trip["error"]
        return x

    @property
    def calls(self) -> int:
        return Tripwire.state["calls"]

    @property
    def error(self) -> BaseException | None:
        return Tripwire.state["error"]

    def arm(self, fail_at: int | None, error: BaseException | None = None) -> None:
        Tripwire.state.update(calls=0, fail_at=fail_at, error=error)


def faulty_net() -> nn.Sequential:
    """A small CNN in train mode (so a missed eval() would move its BatchNorm statistics) with a tripwire mid-way."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Tripwire(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).train()


def inspector_of(model: nn.Module) -> Inspector:
    return Inspector(model, transform=Preprocess(resize=32, crop=32))


CALLS = {
    "occlusion": lambda i: M.occlusion(i, PICTURE, target=1, patch=8, stride=4, progress=False),
    "score_cam": lambda i: M.score_cam(i, PICTURE, target=1, layer="4", batch_size=2, progress=False),
    "maximize": lambda i: M.maximize(i, layer="4", channel=0, steps=4, progress=False, size=32, seed=0).images,
    "invert": lambda i: M.invert(i, PICTURE, "4", steps=4, progress=False, seed=0).image,
}
ERRORS = {"exception": lambda: RuntimeError("injected fault"), "interrupt": KeyboardInterrupt}


def expect_fault(error: BaseException):
    """The fault must come out of the call: a KeyboardInterrupt as itself, an exception as itself or as the
    one-line InputError that names it."""
    if isinstance(error, KeyboardInterrupt):
        return pytest.raises(KeyboardInterrupt)
    return pytest.raises((RuntimeError, InputError), match="injected fault")


ABSORBING = {"occlusion"}
"""Methods that may absorb an exception by design, and must then still answer right: occlusion's folded scoring copy
tries a channels-last forward (twice) and keeps the usual layout when both raise (`backend.folded.fast_copy`); the
fast paths survive such a fault (`test_a_fault_while_a_fast_path_is_built_does_not_cost_the_model_that_fast_path`)."""


@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("method", list(CALLS))
def test_a_fault_at_any_forward_leaves_the_model_and_caches_clean(method, error):
    wire = Tripwire()
    inspector = warm(inspector_of(faulty_net()))
    wire.arm(None)
    expected = CALLS[method](inspector).detach().clone()
    forwards = wire.calls
    assert forwards >= 2
    for fail_at in range(1, forwards + 1):
        model = faulty_net()  # fresh, so every cache (the Inspector's, the per-model engines) starts as before
        before = model_state(model)
        inspector = warm(inspector_of(model))
        wire.arm(fail_at, ERRORS[error]())
        try:
            if error == "exception" and method in ABSORBING:
                try:
                    answer = CALLS[method](inspector)
                except (RuntimeError, InputError) as raised:
                    assert "injected fault" in str(raised)
                else:  # absorbed: then the answer must be the right one
                    torch.testing.assert_close(answer, expected, rtol=1e-5, atol=1e-6)
            else:
                with expect_fault(wire.error):
                    CALLS[method](inspector)
        finally:
            wire.arm(None)
        assert hooks_left(model) == 0
        assert_same_state(before, model_state(model))
        torch.testing.assert_close(CALLS[method](inspector), expected, rtol=1e-5, atol=1e-6, msg=f"after a fault at forward {fail_at}")
        assert all(module.training for module in model.modules())


def warm(inspector: Inspector) -> Inspector:
    """`inspector` with its one-time probes done (layer list, total stride), so calls count the same forwards."""
    inspector.layers  # noqa: B018
    inspector.min_input_side  # noqa: B018
    return inspector


def index_state(index) -> dict:
    state = index.state_dict()
    return {key: state[key] for key in ("count", "complete", "hashes", "labels", "predictions", "confidences", "codes", "thumbnails", "top", "shapes")}


def assert_equal_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, dict):
            assert_equal_states(value, b[key])
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


@pytest.mark.parametrize("error", list(ERRORS))
def test_an_interrupted_index_resumes_to_the_uninterrupted_one(tmp_path, error):
    wire = Tripwire()
    images = torch.rand(23, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    wire.arm(None)
    whole = build_index(inspector_of(faulty_net()), images, ["2", "5"], k=4, batch_size=5, progress=False)
    forwards = wire.calls
    for fail_at in sorted({2, forwards // 2, forwards - 1}):
        model = faulty_net()
        before = model_state(model)
        inspector = inspector_of(model)
        path = tmp_path / f"interrupted_{fail_at}.pt"
        wire.arm(fail_at, ERRORS[error]())
        try:
            if error == "exception":  # may be absorbed by the folded copy's channels-last trial (see ABSORBING)
                try:
                    absorbed = build_index(inspector, images, ["2", "5"], k=4, batch_size=5, path=path, progress=False)
                except (RuntimeError, InputError) as raised:
                    assert "injected fault" in str(raised)
                else:
                    assert_equal_states(index_state(absorbed), index_state(whole))
            else:
                with expect_fault(wire.error):
                    build_index(inspector, images, ["2", "5"], k=4, batch_size=5, path=path, progress=False)
        finally:
            wire.arm(None)
        assert hooks_left(model) == 0
        assert_same_state(before, model_state(model))
        resumed = build_index(inspector, images, ["2", "5"], k=4, batch_size=5, path=path, progress=False)
        assert_equal_states(index_state(resumed), index_state(whole))


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on deprecated torch.distributed aliases warns
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_a_flood_of_layer_and_channel_changes_ends_on_the_last(monkeypatch):
    model = faulty_net()
    widget = LayerExplorer(inspector_of(model), PICTURE)
    layers = [layer["name"] for layer in widget.layers]
    rng = np.random.default_rng(0)
    widget.layer, widget.channel = layers[0], 0
    baseline = live_tensors()
    for step in range(1000):
        layer = layers[int(rng.integers(len(layers)))]
        channels = widget.inspector.layer(layer).shape[0]
        with widget.hold_trait_notifications():
            widget.layer = layer
            widget.channel = int(rng.integers(-1, channels))
    assert live_tensors() <= baseline + 50
    assert widget.error == ""
    last = inspector_of(faulty_net()).activations(PICTURE, widget.layer)  # computed afresh, no cache shared
    expected = scale_maps(last, widget.normalize)[0].numpy()
    shown = np.frombuffer(widget.maps["data"], widget.maps["dtype"]).reshape(widget.maps["shape"])
    assert widget.maps["layer"] == widget.layer
    np.testing.assert_array_equal(shown, expected)
    assert hooks_left(model) == 0


def test_a_flood_of_occluder_moves_ends_on_the_last():
    model = faulty_net()
    widget = OcclusionSlider(inspector_of(model), PICTURE, patch=8, stride=8)
    rng = np.random.default_rng(1)
    widget.x, widget.y = 1.0, 1.0
    baseline = live_tensors()
    for request in range(1, 501):
        with widget.hold_trait_notifications():
            widget.x, widget.y = float(rng.uniform(0, 32)), float(rng.uniform(0, 32))
            widget.request = request
    assert live_tensors() <= baseline + 50
    readout = widget.readout
    assert (readout["request"], readout["x"], readout["y"]) == (500, widget.x, widget.y)
    from cnnwidgets.methods.occlusion import centered_box, occluded_logits

    box = centered_box(widget.y, widget.x, 8, (32, 32))
    expected = occluded_logits(widget.inspector, widget._batch, [box], widget._fill(), patch=8)[0].softmax(-1)[widget.target]
    assert readout["probability"] == pytest.approx(float(expected), abs=1e-6)
    assert hooks_left(model) == 0


@pytest.mark.parametrize("error", list(ERRORS))
def test_a_widget_stays_usable_after_a_fault(error):
    model = faulty_net()
    wire = model[3]
    widget = LayerExplorer(inspector_of(model), PICTURE)
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    wire.arm(1, ERRORS[error]())
    try:
        with expect_fault(wire.error):
            widget.set_image(other)
    finally:
        wire.arm(None)
    assert hooks_left(model) == 0 and all(module.training for module in model.modules())
    widget.set_image(other)
    assert widget.error == ""
    torch.testing.assert_close(widget._activations(), inspector_of(faulty_net()).activations(other, widget.layer))


def fast_paths(inspector: Inspector) -> tuple[str, bool]:
    """(the scoring copy's type, whether the incremental engine is built, or can be) for PICTURE's input shape."""
    from cnnwidgets.backend.incremental import UnsupportedModel, engine_for

    batch = inspector.preprocess(PICTURE)
    scorer = type(inspector.scoring_model(batch, images=10**6)).__name__
    try:
        built = engine_for(inspector.memo, batch) is not None
    except UnsupportedModel:
        built = False
    return scorer, built


@pytest.mark.parametrize("method", ["auto", "incremental"])
def test_a_fault_while_a_fast_path_is_built_does_not_cost_the_model_that_fast_path(method):
    """A fault at any forward of occlusion's one-time work (the folded copy's channels-last trial, the engine's
    tracing and check) gives the right answer or the fault, and afterwards the same fast paths as a call without
    a fault: the trial and the trace are tried once more before a failure is kept."""
    wire = Tripwire()
    call = lambda i: M.occlusion(i, PICTURE, target=1, patch=8, stride=4, progress=False, method=method)  # noqa: E731
    inspector = warm(inspector_of(faulty_net()))
    wire.arm(None)
    expected = call(inspector).detach().clone()
    forwards = wire.calls
    unfaulted = fast_paths(inspector)
    assert unfaulted == ("ChannelsLast", True)  # the model has both fast paths
    for fail_at in range(1, forwards + 1):
        inspector = warm(inspector_of(faulty_net()))
        wire.arm(fail_at, RuntimeError("injected fault"))
        try:
            answer = call(inspector)
        except (RuntimeError, InputError) as raised:
            assert "injected fault" in str(raised)
        else:
            torch.testing.assert_close(answer, expected, rtol=1e-5, atol=1e-6)
        finally:
            wire.arm(None)
        assert fast_paths(inspector) == unfaulted, f"fault at forward {fail_at}"
