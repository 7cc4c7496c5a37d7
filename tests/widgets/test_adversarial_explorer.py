"""AdversarialExplorer's Python side: epsilon and method re-run the attack; fooling images from noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets import InputError
from cnnwidgets.widgets.adversarial_explorer import AdversarialExplorer

from tests.methods.test_maximize import small_inspector


@pytest.fixture(scope="module")
def explorer():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return AdversarialExplorer(small_inspector(), image, epsilon=4, steps=3, fool_target="c2")


def pixels(message) -> np.ndarray:
    return np.frombuffer(message["data"], np.uint8).reshape(message["shape"]).astype(int)


def test_epsilon_bounds_the_change_and_redraws(explorer):
    assert explorer.summary["method"] == "PGD" and explorer.summary["epsilon"] == 4
    assert np.abs(pixels(explorer.adversarial) - pixels(explorer.original)).max() <= 4 + 1
    before = explorer.adversarial["data"]
    explorer.epsilon = 16
    assert explorer.adversarial["data"] != before
    assert 4 < np.abs(pixels(explorer.adversarial) - pixels(explorer.original)).max() <= 16 + 1
    explorer.method = "fgsm"
    assert explorer.summary["method"] == "FGSM" and explorer.perturbation["linf"] == pytest.approx(16, abs=0.01)
    explorer.epsilon = 0
    assert np.array_equal(pixels(explorer.adversarial), pixels(explorer.original))
    assert pixels(explorer.saliency_original).shape == (32, 32)
    explorer.epsilon, explorer.method = 8, "pgd"


def test_targeted_attack_and_bad_target(explorer):
    assert explorer.target == -1 and not explorer.summary["targeted"]  # untargeted: away from the top class
    explorer.target = 4  # a class index, as `target` is in every widget
    assert explorer.summary["targeted"] and explorer.summary["label"] == "c4"
    assert explorer.summary["after"] >= explorer.summary["before"]
    with pytest.raises(InputError, match="out of range"):
        explorer.target = 44
    assert explorer.target == 4
    explorer.target = -1


def test_the_constructor_takes_class_names_or_indices():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    by_name = AdversarialExplorer(small_inspector(), image, epsilon=4, steps=2, target="c3", fool_target="c2")
    by_index = AdversarialExplorer(small_inspector(), image, epsilon=4, steps=2, target=3, fool_target=2)
    assert (by_name.target, by_name.fool_target) == (by_index.target, by_index.fool_target) == (3, 2)
    assert by_name.summary == by_index.summary and by_name.summary["label"] == "c3"
    with pytest.raises(InputError, match="no class named"):
        AdversarialExplorer(small_inspector(), image, target="c44")


def test_fooling_image_from_the_button_counter(explorer):
    explorer._handle_custom_msg({"action": "fool"}, [])  # what the button sends
    result = explorer.fool_result
    assert explorer.fooling["label"] == "c2" and result.label_probability[1] > result.label_probability[0]
    assert len(explorer.fooling_top) == 5
    assert explorer.to_png()[:4] == b"\x89PNG"
