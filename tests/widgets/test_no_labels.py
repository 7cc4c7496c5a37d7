"""Widgets and methods with labels=None: classes are named "class 0", "class 1", … and those names work as targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from cnnwidgets import Inspector, InputError
from cnnwidgets.methods import adversarial
from cnnwidgets.widgets import ActivationMaximization, AdversarialExplorer, SaliencyOverlay

from tests.conftest import TinyCNN, hooks_left


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return Inspector(torchvision.models.resnet18(weights=None, num_classes=10))


@pytest.fixture(scope="module")
def image():
    return torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_default_names_are_targets():
    inspector = Inspector(TinyCNN())
    assert inspector.label(2) == "class 2"
    assert inspector.class_index("class 2") == 2 and inspector.class_index(2) == 2
    with pytest.raises(InputError, match="out of range"):
        inspector.class_index("class 7", torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match="no class named 'cat'"):
        inspector.class_index("cat")
    named = Inspector(TinyCNN(), labels=["a", "b", "c"])
    with pytest.raises(InputError, match="no class named 'class 1'"):  # only the default names are indices
        named.class_index("class 1")


def test_adversarial_explorer_without_labels(resnet, image):
    widget = AdversarialExplorer(resnet, image, steps=2, target="class 3")
    assert widget.error == "" and widget.result.label == 3 and widget.summary["label"] == "class 3"
    assert widget.fool_target == 0 and widget.labels[:2] == ["class 0", "class 1"]
    assert widget.to_png()[:4] == b"\x89PNG"
    assert hooks_left(resnet.model) == 0


def test_activation_maximization_without_labels(resnet):
    widget = ActivationMaximization(resnet, target=0, size=32)
    assert widget.error == "" and widget.target == 0 and "class 0" in widget.description
    assert widget.to_png()[:4] == b"\x89PNG"


def test_pgd_runs_once_per_setting(resnet, image, monkeypatch):
    from cnnwidgets.widgets import adversarial_explorer

    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("steps"))
        return adversarial.pgd(*args, **kwargs)

    monkeypatch.setattr(adversarial_explorer, "pgd", counted)
    widget = AdversarialExplorer(resnet, image, steps=1)
    assert calls == [1]
    widget.epsilon = 4
    assert calls == [1, 1]


def test_comparison_leaves_out_rules_the_model_does_not_allow(image):
    import timm

    torch.manual_seed(0)
    inspector = Inspector(timm.create_model("efficientnet_b0", pretrained=False, num_classes=10))  # SiLU
    widget = SaliencyOverlay(inspector, image, side_by_side=True)
    assert widget.error == ""
    assert "guided_backprop" not in widget.maps["methods"] and "saliency" in widget.maps["methods"]
    assert len(widget.maps["methods"]) == len(widget.compare) - 1
    assert any(note.startswith("Guided backprop left out") and "SiLU" in note for note in widget.maps["notes"])
    assert np.frombuffer(widget.maps["data"], np.uint8).reshape(widget.maps["shape"]).shape[0] == len(widget.maps["methods"])
    assert widget.to_png()[:4] == b"\x89PNG"
    widget.side_by_side = False
    with pytest.raises(InputError, match="SiLU"):  # asked for on its own, it says why
        widget.method = "guided_backprop"
