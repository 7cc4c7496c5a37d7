"""Attacks: PGD at 8/255 flips the embedded model on the sample images; FGSM equals Captum's FGSM."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnwidgets import InputError, Inspector, zoo
from cnnwidgets.backend import Preprocess
from cnnwidgets.methods.adversarial import fgsm, fooling_image, pgd, saliency

from tests.conftest import assert_same_state, hooks_left, model_state
from tests.methods.test_maximize import small_inspector


@pytest.mark.parametrize("name", zoo.sample_images())
def test_pgd_at_8_over_255_flips_the_prediction(lite0, name):
    image = zoo.sample_image(name)
    before = model_state(lite0.model)
    result = pgd(lite0, image, 8 / 255, steps=5)
    assert result.flipped, (result.original_top[0], result.adversarial_top[0])
    assert result.linf <= 8 / 255 + 1e-6
    assert result.label_probability[1] < result.label_probability[0]
    assert_same_state(before, model_state(lite0.model))
    assert hooks_left(lite0.model) == 0 and all(p.grad is None for p in lite0.model.parameters())


def test_fgsm_matches_captum_on_a_torchvision_model():
    from captum.robust import FGSM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    preprocess = Preprocess(resize=64, crop=64)
    inspector = Inspector(model, preprocess, labels=[str(i) for i in range(10)])
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(preprocess.mean).view(1, 3, 1, 1), torch.tensor(preprocess.std).view(1, 3, 1, 1)
    batch = (pixels - mean) / std

    def probabilities(x):
        return model((x - mean) / std).softmax(-1)

    for targeted, target in ((False, 3), (True, 7)):
        ours = fgsm(inspector, batch, 4 / 255, target=target, targeted=targeted)
        theirs = FGSM(probabilities, lower_bound=0.0, upper_bound=1.0).perturb(
            ours.original.clone(), epsilon=4 / 255, target=target, targeted=targeted)
        same = (ours.adversarial - theirs).abs() < 1e-5
        assert same.float().mean() > 0.999, float(same.float().mean())  # equal but for gradients at Captum's zero threshold
        assert (ours.adversarial - theirs).abs().max() <= 4 / 255 + 1e-6
    assert all(p.grad is None for p in model.parameters())


def test_targeted_pgd_reaches_the_target_and_is_reproducible():
    small = small_inspector()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    first = pgd(small, image, 0.3, steps=10, target="c4", targeted=True, random_start=True, seed=5)
    again = pgd(small, image, 0.3, steps=10, target="c4", targeted=True, random_start=True, seed=5)
    assert torch.equal(first.adversarial, again.adversarial)
    assert first.label_probability[1] > first.label_probability[0]
    assert first.magnified().min() >= 0 and first.magnified().max() <= 1
    assert set(first.pictures()) == {"original", "perturbation", "adversarial"}


def test_fooling_image_from_noise(lite0):
    result = fooling_image(lite0, "goldfish", steps=30, size=96, confidence=0.9)
    assert result.adversarial_top[0][0] == "goldfish" and result.adversarial_top[0][1] >= 0.9
    assert result.flipped and result.steps <= 30


def test_saliency_is_the_shared_input_gradient_map_of_each_image():
    """On a linear model (one 8×8 convolution over the whole 8×8 image) the input gradient of class k is its kernel,
    whatever the image: each map must be max |w_k| over colours divided by its 99.5th percentile and clipped (the
    shared display rule)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 8), nn.Flatten())
    inspector = Inspector(model, Preprocess(resize=8, crop=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)), labels=["a", "b"])
    maps = saliency(inspector, torch.rand(2, 3, 8, 8), target="b")
    raw = model[0].weight[1].detach().abs().amax(0)
    expected = (raw / torch.quantile(raw.flatten(), 0.995)).clamp(0, 1)
    assert maps.shape == (2, 8, 8)
    assert torch.allclose(maps[0], expected, atol=1e-6) and torch.allclose(maps[1], expected, atol=1e-6)


def test_bad_arguments_name_the_fix():
    small = small_inspector()
    with pytest.raises(InputError, match="epsilon=2"):
        fgsm(small, torch.rand(3, 32, 32), 2)
    with pytest.raises(InputError, match="needs a target class"):
        pgd(small, torch.rand(3, 32, 32), targeted=True)
