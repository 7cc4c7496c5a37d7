"""Code inversion: early layers give the image back closely, deeper ones less so; the model and image stay as they were."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnwidgets import InputError
from cnnwidgets.methods.invert import Inverter, invert, invert_layers

from tests.conftest import assert_same_state, hooks_left, model_state
from tests.methods.test_maximize import small_inspector

LAYERS = ["_stem_act", "_blocks.1", "_blocks.5"]
EARLY_PSNR_DB = 22.0  # measured 25.2 dB; then 18.8 and 14.9 dB deeper (60 steps, 64×64, seed 0)


@pytest.fixture(scope="module")
def small_cat(lite0, cat):
    """The cat at 64×64 (the model takes any size): the same trend, a fraction of the time."""
    return F.interpolate(lite0.preprocess(cat), size=(64, 64), mode="bilinear", antialias=True, align_corners=False)


def test_psnr_falls_from_shallow_to_deep_layers(lite0, small_cat):
    before = small_cat.clone()
    results = invert_layers(lite0, small_cat, LAYERS, steps=60, seed=0, progress=False)
    psnrs = [result.psnr for result in results]
    assert psnrs[0] >= EARLY_PSNR_DB, psnrs  # from the first ReLU: close to the photo
    assert psnrs == sorted(psnrs, reverse=True), psnrs  # monotone: deeper layers keep less
    assert psnrs[0] - psnrs[-1] > 5, psnrs
    assert all(result.code_distance < 0.6 for result in results), [r.code_distance for r in results]
    assert torch.equal(small_cat, before)
    assert results[0].picture.shape == (64, 64, 3) and results[0].picture.dtype == torch.uint8


def test_code_distance_falls_and_runs_are_reproducible():
    small = small_inspector()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = invert(small, image, "relu2", steps=30, seed=1, progress=False)
    again = invert(small, image, "relu2", steps=30, seed=1, progress=False)
    assert torch.equal(first.image, again.image)
    assert first.history[-1] < first.history[0] * 0.7


def test_leaves_the_model_alone_and_removes_hooks():
    small = small_inspector()
    small.model.train()
    before = model_state(small.model)
    inverter = Inverter(small, torch.rand(3, 32, 32), "conv2", param="fourier", tv=0.1, l2=0.1, blur=0.5)
    inverter.step(3)
    inverter.result()
    assert_same_state(before, model_state(small.model))
    assert all(p.grad is None for p in small.model.parameters()) and hooks_left(small.model) == 0


def test_bad_arguments_name_the_fix():
    small = small_inspector()
    with pytest.raises(InputError, match="did you mean"):
        invert(small, torch.rand(3, 32, 32), "relu", steps=1)
    with pytest.raises(InputError, match="list of layer names"):
        invert_layers(small, torch.rand(3, 32, 32), "relu1")
    with pytest.raises(InputError, match="tv=-1"):
        invert(small, torch.rand(3, 32, 32), "relu1", tv=-1)
