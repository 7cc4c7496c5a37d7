"""CodeInversion's Python side: reconstructions from several layers advance together in the background."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets import InputError
from cnnwidgets.widgets.code_inversion import CodeInversion

from tests.conftest import hooks_left
from tests.methods.test_maximize import small_inspector


@pytest.fixture
def widget():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return CodeInversion(small_inspector(), image, layers=["relu1", "relu2"], size=32, steps=10, every=5)


def test_reconstructions_improve_while_running(widget):
    distances = list(widget.distances)
    widget.run()
    assert widget.step == 10 and widget.reconstructions["layers"] == ["relu1", "relu2"]
    assert np.frombuffer(widget.reconstructions["data"], np.uint8).reshape(widget.reconstructions["shape"]).shape == (2, 32, 32, 3)
    assert all(after < before for after, before in zip(widget.distances, distances))
    assert len(widget.psnr) == 2 and hooks_left(widget.inspector.model) == 0
    assert widget.to_png()[:4] == b"\x89PNG"


def test_layers_change_restarts_and_bad_layers_raise(widget):
    widget.run(steps=5)
    widget.selected_layers = ["conv1"]
    assert widget.step == 0 and widget.reconstructions["layers"] == ["conv1"]
    with pytest.raises(InputError, match="did you mean"):
        widget.selected_layers = ["relu"]
    with pytest.raises(InputError, match="selected_layers is empty"):
        widget.selected_layers = []


def test_a_small_fixed_size_model_inverts_at_its_own_size():
    # the digits CNN ends in a Linear over a 32 px map: the 128 px default and 224 px layer discovery both broke it
    from cnnwidgets import zoo

    widget = CodeInversion(zoo.digits_cnn(device="cpu"), zoo.digits("test")[0][0], steps=2)
    widget.wait(60)
    assert widget.error == "" and widget.size == 32
    assert widget.to_png()[:4] == b"\x89PNG"
