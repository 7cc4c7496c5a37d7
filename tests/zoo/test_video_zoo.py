"""The embedded action dataset and networks: deterministic clips, held-out accuracy, the confusable pair, retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets import zoo
from cnnwidgets.errors import InputError
from cnnwidgets.zoo.motion import (
    CONFUSABLE,
    MOTION_LABELS,
    TwoStreamNet,
    motion_info,
    render_clip,
)
from cnnwidgets.zoo.train_motion import confusion, train

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


def test_clips_are_deterministic_and_balanced() -> None:
    clips = zoo.motion_clips("test")
    assert len(clips) == 192 and clips[0][0].shape == (16, 32, 32, 3) and clips[0][0].dtype == np.uint8
    assert np.bincount(clips.targets).tolist() == [24] * 8
    again = render_clip(0, np.random.default_rng(1))
    assert np.array_equal(again, clips[0][0])  # the first test clip, drawn again from its seed
    train_clips = zoo.motion_clips("train")
    assert not any(np.array_equal(train_clips[i][0], clips[i][0]) for i in range(8))
    with pytest.raises(InputError, match="pick 'train' or 'test'"):
        zoo.motion_clips("val")


def test_motion_is_what_tells_classes_apart() -> None:
    """Left and right clips have the same frames on average; what differs is the sign of the horizontal motion."""
    clips, labels = zoo.motion_clips("train").clips, zoo.motion_clips("train").targets
    bright = clips.max(-1) > 175  # the object (the background stays below 0.65 × 255)
    columns = np.arange(32)
    centre = (bright * columns).sum((2, 3)) / bright.sum((2, 3)).clip(1)  # [N,T] object column per frame
    drift = centre[:, -1] - centre[:, 0]
    assert (drift[labels == MOTION_LABELS.index("right")] > 4).all()
    assert (drift[labels == MOTION_LABELS.index("left")] < -4).all()


@pytest.mark.parametrize("network", ["two_stream", "c3d"])
def test_held_out_accuracy_and_the_confusable_pair(network: str) -> None:
    inspector = zoo.motion_cnn(network)
    before = model_state(inspector.model)
    x, y = zoo.motion_clips("test").tensors()
    matrix = confusion(inspector.model, x, y)
    accuracy = float(matrix.diagonal().sum() / matrix.sum())
    assert accuracy == pytest.approx(motion_info()["networks"][network]["test_accuracy"], abs=1e-4)
    assert accuracy > 0.75  # chance is 0.125
    mistakes = matrix - torch.diag(matrix.diagonal())
    first, second = (MOTION_LABELS.index(name) for name in CONFUSABLE)
    worst = divmod(int(mistakes.argmax()), len(MOTION_LABELS))
    assert set(worst) == {first, second}  # the most confused pair is the one built to be confused
    clip, label = zoo.motion_clips("test")[0]
    assert inspector.predict(clip, 1)[0][0] == MOTION_LABELS[label]
    assert hooks_left(inspector.model) == 0
    assert_same_state(before, model_state(inspector.model))


def test_two_stream_scores_split_into_appearance_and_motion_parts() -> None:
    model = zoo.motion_cnn("two_stream").model
    assert isinstance(model, TwoStreamNet)
    x, _ = zoo.motion_clips("test").tensors()
    with torch.no_grad():
        appearance, motion = model.stream_logits(x[:8])
        assert torch.allclose(appearance + motion + model.fusion.bias, model(x[:8]), atol=1e-5)


def test_training_is_deterministic() -> None:
    first, history = train("c3d", epochs=1, limit=32, log=False)
    second, _ = train("c3d", epochs=1, limit=32, log=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
