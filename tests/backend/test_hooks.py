"""tapped_forward: the one hooked forward that captures layer outputs for activations, inversion and maximization."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnwidgets import InputError
from cnnwidgets.backend.hooks import tapped_forward

from tests.conftest import hooks_left


def test_taps_stop_the_forward_and_keep_a_graph_only_when_asked(tiny, tiny_input):
    fc_calls = []
    handle = tiny.fc.register_forward_pre_hook(lambda module, args: fc_calls.append(1))
    x = tiny_input.clone().requires_grad_(True)
    output, captured = tapped_forward(tiny, {"conv": (tiny.conv, 0), "again": (tiny.conv, 0), "relu": (tiny.relu, 0)}, x)
    assert output is None and fc_calls == []  # stopped once every tap was in
    expected = torch.nn.functional.conv2d(tiny_input, tiny.conv.weight, tiny.conv.bias)
    assert torch.equal(captured["conv"], expected) and torch.equal(captured["again"], expected)
    assert torch.equal(captured["relu"], expected.clamp(min=0))
    assert not captured["conv"].requires_grad
    output, captured = tapped_forward(tiny, {"relu": (tiny.relu, 0)}, x, keep_graph=True, to_end=True)
    assert fc_calls == [1] and torch.equal(output, tiny(tiny_input))
    (grad,) = torch.autograd.grad(captured["relu"].sum(), x)
    assert grad.abs().sum() > 0
    handle.remove()
    assert hooks_left(tiny) == 0


def test_a_tap_the_forward_never_reaches_is_an_input_error(tiny, tiny_input):
    unused = nn.ReLU()
    with pytest.raises(InputError, match="not reached"):
        tapped_forward(tiny, {"unused": (unused, 0)}, tiny_input)
    with pytest.raises(InputError, match="not reached"):
        tapped_forward(tiny, {"second call": (tiny.conv, 1)}, tiny_input)  # the conv runs once
    assert hooks_left(tiny) == 0 and hooks_left(unused) == 0
