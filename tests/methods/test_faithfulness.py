"""Sanity check (model randomization) and deletion/insertion curves."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from cnnwidgets import Inspector, InputError
from cnnwidgets.methods import faithfulness as Fa
from cnnwidgets.methods.gradients import saliency

from tests.conftest import assert_same_state, hooks_left, model_state


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def small():
    return Inspector(Small()), torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_rank_correlation():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert Fa.rank_correlation(a, a * 10 + 3) == pytest.approx(1.0)
    assert Fa.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert Fa.rank_correlation(a, a.pow(3)) == pytest.approx(1.0)  # monotone: rank correlation is 1


def test_sanity_check_randomizes_a_copy_top_down(small):
    inspector, image = small
    assert Fa.randomization_steps(inspector.model) == ["fc", "features.2", "features.0"]
    before = model_state(inspector.model)
    rng = torch.random.get_rng_state()
    result = Fa.sanity_check(inspector, image, 2, progress=False)
    assert_same_state(before, model_state(inspector.model))  # the user's model is never touched
    assert torch.equal(rng, torch.random.get_rng_state())
    assert hooks_left(inspector.model) == 0
    assert result.steps == ["fc", "features.2", "features.0"] and result.target == 2
    for method in Fa.SANITY_METHODS:
        assert result.correlations[method][0] == pytest.approx(1.0)
        assert len(result.correlations[method]) == 4
        assert result.maps[method].shape == (4, 16, 16)
    # the gradient changes once the weights go; a fully random network explains nothing of the trained one
    assert result.correlations["saliency"][-1] < 0.9
    again = Fa.sanity_check(inspector, image, 2, methods=["saliency"], progress=False)
    assert again.correlations["saliency"] == result.correlations["saliency"]  # seeded
    figure = result.figure()
    assert len(figure.axes) > 3


def test_sanity_check_on_lite0_guided_backprop_barely_changes(lite0, cat):
    steps = Fa.randomization_steps(lite0.model)[:2]  # the classifier and the last BatchNorm
    result = Fa.sanity_check(lite0, cat, methods=["guided_backprop", "saliency"], steps=steps, progress=False)
    assert result.correlations["guided_backprop"][-1] > 0.9  # the point of Adebayo et al.
    assert result.correlations["saliency"][-1] < 0.6


def test_sanity_check_bad_input(small):
    inspector, image = small
    with pytest.raises(InputError, match="unknown method 'salience'"):
        Fa.sanity_check(inspector, image, methods=["salience"])
    with pytest.raises(InputError, match="no module named 'fc2'"):
        Fa.sanity_check(inspector, image, steps=["fc2"])


def test_deletion_and_insertion_curves(small):
    inspector, image = small
    target = int(inspector.logits(image).argmax())
    ranking = saliency(inspector, image, target)
    result = Fa.deletion_insertion(inspector, image, ranking, target, steps=8, batch_size=3)
    assert result["fractions"][0] == 0 and result["fractions"][-1] == 1 and len(result["deletion"]) == 9
    probability = float(inspector.logits(image).softmax(-1)[target])
    assert result["deletion"][0] == pytest.approx(probability, rel=1e-5)  # nothing deleted yet
    assert result["insertion"][-1] == pytest.approx(probability, rel=1e-5)  # everything inserted
    everything_gone = float(inspector.logits(torch.zeros_like(image)).softmax(-1)[target])
    assert result["deletion"][-1] == pytest.approx(everything_gone, rel=1e-5)
    assert 0 <= result["deletion_auc"] <= 1 and 0 <= result["insertion_auc"] <= 1
    # the same curves whatever the batch size
    assert Fa.deletion_insertion(inspector, image, ranking, target, steps=8, batch_size=8)["deletion"] == pytest.approx(result["deletion"])


def test_deletion_removes_the_top_ranked_pixels_first():
    class Reader(nn.Module):  # the score of class 0 is the value of pixel (0, 0)
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            with torch.no_grad():
                self.conv.weight.fill_(1), self.conv.bias.zero_()

        def forward(self, x):
            pixel = self.conv(x)[:, 0, 0, 0]
            return torch.stack([pixel, -pixel], 1)

    inspector = Inspector(Reader())
    image = torch.zeros(1, 1, 4, 4)
    image[0, 0, 0, 0] = 5
    good = torch.zeros(4, 4)
    good[0, 0] = 1
    bad = torch.ones(4, 4)
    bad[0, 0] = 0
    faithful = Fa.deletion_insertion(inspector, image, good, 0, steps=16)
    unfaithful = Fa.deletion_insertion(inspector, image, bad, 0, steps=16)
    assert faithful["deletion_auc"] < unfaithful["deletion_auc"]
    assert faithful["insertion_auc"] > unfaithful["insertion_auc"]
    with pytest.raises(InputError, match="does not fit"):
        Fa.deletion_insertion(inspector, image, torch.zeros(3, 3), 0)
