"""FeatureEvolution: checkpoints and live snapshots, panels per epoch, and the user's model left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import InputError
from cnnwidgets.backend.checkpoints import load_checkpoints
from cnnwidgets.methods.evolution import evolution_panels, layer_health, strongest, weight_change
from cnnwidgets.widgets.feature_evolution import FeatureEvolution

from tests.conftest import assert_same_state, hooks_left, model_state


def small_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


@pytest.fixture
def data() -> torch.Tensor:
    return torch.randn(20, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def tiles_of(widget: FeatureEvolution) -> np.ndarray:
    return np.frombuffer(widget.tiles["data"], np.uint8).reshape(widget.tiles["shape"])


def test_health_strongest_and_weight_change_by_hand():
    maps = torch.zeros(2, 3, 2, 2)
    maps[0, 1, 1, 0] = 5.0
    maps[1, 1, 0, 1] = 5.0  # a tie: the lower image wins
    maps[1, 2, 1, 1] = 7.0
    dead, sparsity = layer_health(maps)
    assert dead == pytest.approx(1 / 3) and sparsity == pytest.approx(1 - 3 / 24)
    assert strongest(maps, 1) == (0, 5.0, (1, 0)) and strongest(maps, 2) == (1, 7.0, (1, 1))
    before = {"conv.weight": torch.ones(2, 2)}
    after = {"conv.weight": torch.ones(2, 2) * 1.5}
    assert weight_change(before, after, ["conv"]) == {"conv": pytest.approx(0.5)}


def test_checkpoints_load_into_a_copy_never_the_users_model(data, tmp_path):
    model = small_cnn(0).train()
    before = model_state(model)
    states = {epoch: small_cnn(epoch).state_dict() for epoch in (1, 2, 5)}
    for epoch, state in states.items():
        torch.save(state, tmp_path / f"run_epoch_{epoch}.pt")
    widget = FeatureEvolution(model, tmp_path, data, features=[("1", 0), ("4", 2)])
    assert widget.epochs == [1, 2, 5] and widget.epoch == 5
    assert widget.inspector.model is not model
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0 and hooks_left(widget.inspector.model) == 0
    assert tiles_of(widget).shape == (2, 3, 2, 48, 48, 3)
    filters = np.frombuffer(widget.filters["data"], np.uint8).reshape(widget.filters["shape"])
    assert filters.shape == (3, 4, 3, 3, 1) and not np.array_equal(filters[0], filters[2])


def test_live_snapshots_keep_the_weights_of_that_moment(data):
    model = small_cnn(0)
    widget = FeatureEvolution.track(model, data, features=[("4", 1)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    recorded, losses = {}, {}
    for epoch in (3, 1, 2):  # out of order on purpose
        loss = model(data).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recorded[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        losses[epoch] = float(loss.detach())
        widget.snapshot(epoch, {"loss": losses[epoch]})
    widget.wait()
    assert widget.epochs == [1, 2, 3] and widget.epoch == 3
    for epoch, state in recorded.items():
        assert all(torch.equal(widget._states[epoch][k], v) for k, v in state.items())
    # the column of each epoch shows that epoch's panels, computed independently here
    reference = small_cnn(0)
    for column, epoch in enumerate(widget.epochs):
        reference.load_state_dict(recorded[epoch])
        from cnnwidgets import Inspector

        panels = evolution_panels(Inspector(reference), widget._batch, [("4", 1)], ["1", "4"])
        np.testing.assert_array_equal(tiles_of(widget)[:, column], panels["tiles"].numpy())
        assert widget.curves["dead_fraction"]["4"][column] == panels["dead_fraction"]["4"]
    assert widget.curves["metrics"]["loss"] == [losses[1], losses[2], losses[3]]
    assert widget.curves["weight_change"]["0"][0] is None and widget.curves["weight_change"]["0"][1] > 0


def test_the_users_epoch_request_wins_over_following_the_newest(data):
    """The slider's message carries a request id; the next publish answers it (`tiles["request"]`) and, since the
    user left the newest epoch, stays on the user's epoch instead of jumping to the new one."""
    from tests.widgets.test_refused_values import browser_update

    widget = FeatureEvolution.track(small_cnn(0), data, features=[("4", 1)])
    for epoch in (0, 1):
        widget.snapshot(epoch)
    widget.wait(60)
    assert widget.epoch == 1 and widget.tiles["request"] == 0  # on the newest: follows it
    browser_update(widget, epoch=0, request=3)
    widget.snapshot(2)
    widget.wait(60)
    assert widget.epochs == [0, 1, 2] and widget.epoch == 0 and widget.tiles["request"] == 3
    browser_update(widget, epoch=2, request=4)
    widget.snapshot(3)
    widget.wait(60)
    assert widget.epoch == 3 and widget.tiles["request"] == 4  # back on the newest: follows again


def test_a_snapshot_only_copies_the_weights_and_the_panels_follow_in_the_background(data):
    model = small_cnn(0)
    widget = FeatureEvolution.track(model, data, features=[("4", 1)])
    forwards = []
    handle = widget.inspector.model.register_forward_hook(lambda *_: forwards.append(1))
    weights = model[0].weight.detach().clone()
    with widget._computing:  # hold the background computation back while the training loop goes on
        widget.snapshot(1)
        with torch.no_grad():
            model[0].weight.add_(1.0)
        assert forwards == [] and widget.epochs == []
    widget.wait()
    handle.remove()
    assert forwards and widget.epochs == [1] and widget.busy is False
    assert torch.equal(widget._states[1]["0.weight"], weights)  # the weights of that moment, not later ones
    panels = evolution_panels(widget.inspector, widget._batch, [("4", 1)], ["1", "4"])  # private copy holds epoch 1
    np.testing.assert_array_equal(tiles_of(widget)[:, 0], panels["tiles"].numpy())


def test_a_failing_snapshot_is_shown_and_raised_by_wait(data):
    model = small_cnn(0)
    widget = FeatureEvolution.track(model, data, features=[("4", 1)])
    model[0].weight = nn.Parameter(torch.zeros(2, 1, 3, 3))  # the user's model no longer fits the tracked copy
    widget.snapshot(1)
    with pytest.raises(InputError, match="does not fit the model"):
        widget.wait()
    assert "does not fit" in widget.error and widget.epochs == []
    widget.wait()  # the failure is raised once


def test_epoch_must_be_a_checkpoint_and_bad_input_is_named(data, tmp_path):
    widget = FeatureEvolution(small_cnn(0), {1: small_cnn(1).state_dict()}, data)
    with pytest.raises(InputError, match="pick one of \\[1\\]"):
        widget.epoch = 7
    assert widget.epoch == 1
    with pytest.raises(InputError, match="does not fit the model"):
        widget.add_checkpoint(2, {"0.weight": torch.zeros(1)})
    assert widget.epochs == [1] and "does not fit" in widget.error
    with pytest.raises(InputError, match="names its epoch"):
        (tmp_path / "final.pt").write_bytes(b"")
        load_checkpoints(tmp_path)
    with pytest.raises(InputError, match="track"):
        widget.snapshot(3)
    with pytest.raises(InputError, match="needs a dataset"):
        FeatureEvolution(small_cnn(0), {})


def test_embedded_digits_run_shows_learning(tmp_path):
    widget = FeatureEvolution()
    accuracy = widget.curves["metrics"]["sample accuracy"]
    assert widget.epochs[0] == 1 and accuracy[-1] > 0.95 and accuracy[-1] > accuracy[0]
    png = widget.to_png(tmp_path / "evolution.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
