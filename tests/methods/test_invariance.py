"""Invariance curves: exactly zero at the identity, flatter deep in a global-pooled network, one batched pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnwidgets import InputError
from cnnwidgets.methods.invariance import KINDS, default_values, invariance_curves, transform

from tests.conftest import assert_same_state, hooks_left, model_state
from tests.methods.test_maximize import small_inspector


@pytest.fixture(scope="module")
def cat_128(lite0, cat):
    return F.interpolate(lite0.preprocess(cat), size=(128, 128), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_distance_at_the_identity(kind):
    small = small_inspector()
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    curves = invariance_curves(small, image, kind, layers=["relu1", "pool"], progress=False)
    values = default_values(kind)
    assert len(curves.values) == 41 and len(values) == 41
    identity = values.index(1.0 if kind == "scale" else 0.0)
    assert identity == 20
    for layer, distances in curves.distances.items():
        assert distances[identity] == 0.0, layer
        assert all(d > 0 for i, d in enumerate(distances) if i != identity), layer
    assert curves.probability[identity] == pytest.approx(float(small.logits(image).softmax(-1).max()), abs=1e-5)


def test_identity_transform_is_an_exact_copy_and_whole_pixel_shifts_are_exact():
    batch = torch.randn(1, 3, 8, 8)
    assert torch.equal(transform(batch), batch) and transform(batch) is not batch
    shifted = transform(batch, dx=2, dy=-1)
    assert torch.equal(shifted[..., :7, 2:], batch[..., 1:, :6])
    assert torch.equal(shifted[..., :, :2], torch.zeros(1, 3, 8, 2))


def test_global_pooled_network_is_flatter_deep_than_shallow(lite0, cat_128):
    values = [-32.0, -24.0, -16.0, -8.0, 0.0, 8.0, 16.0, 24.0, 32.0]
    curves = invariance_curves(lite0, cat_128, "translate", values=values, layers=["_stem_act", "_avg_pooling"], progress=False)
    first, last = curves.distances["_stem_act"], curves.distances["_avg_pooling"]
    assert sum(last) / len(last) < 0.7 * sum(first) / len(first), (first, last)
    assert max(abs(last[i + 1] - last[i]) for i in range(len(last) - 1)) < max(abs(first[i + 1] - first[i]) for i in range(len(first) - 1))
    assert curves.label == lite0.predict(cat_128, 1)[0][0] and len(curves.probability) == len(values)


def test_one_forward_per_batch_and_model_untouched(monkeypatch):
    small = small_inspector()
    small.model.train()
    before = model_state(small.model)
    calls = []
    original = small.model.forward
    monkeypatch.setattr(small.model, "forward", lambda x: calls.append(len(x)) or original(x))
    progress = []
    curves = invariance_curves(small, torch.rand(3, 32, 32), "rotate", batch_size=41, progress=False,
                               callback=lambda done, total: progress.append((done, total)))
    # (layer discovery and the stride probe of a small tensor input,) the reference, all 41 rotations in one pass
    assert calls[-2:] == [1, 41] and len(calls) <= 4
    assert progress == [(41, 41)] and curves.unit == "°" and curves.relative
    monkeypatch.undo()
    assert_same_state(before, model_state(small.model)) and hooks_left(small.model) == 0


def test_bad_arguments_name_the_fix():
    small = small_inspector()
    with pytest.raises(InputError, match="unknown transformation 'shear'"):
        invariance_curves(small, torch.rand(3, 32, 32), "shear")
    with pytest.raises(InputError, match="list of names"):
        invariance_curves(small, torch.rand(3, 32, 32), layers="relu1")
    with pytest.raises(InputError, match="scale=0"):
        transform(torch.rand(1, 3, 8, 8), scale=0)
