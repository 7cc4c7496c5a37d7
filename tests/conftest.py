"""Shared fixtures: tiny hand-built CNNs with known weights, and the embedded model (loaded once)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from cnnwidgets import Inspector, zoo


class TinyCNN(nn.Module):
    """1-channel 4×4 input -> conv 2×2 (2 filters) -> ReLU -> max-pool 2 -> linear to 3 classes; weights set by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=2)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]]))
            self.conv.bias.copy_(torch.tensor([0.0, -10.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch on `count` threads for the block, then the session's count again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one thread (CI-sized, the same sums on any machine), then give the session its threads back:
    a module-level `torch.set_num_threads(1)` would slow every later test and change their float rounding."""
    with torch_threads(1):
        yield


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two PyTorch threads, so that the CPU runs two streams (`backend.device.STREAMS`) whatever the machine."""
    with torch_threads(2):
        yield


@pytest.fixture
def tiny() -> TinyCNN:
    return TinyCNN()


@pytest.fixture
def tiny_input() -> torch.Tensor:
    """A [1,1,4,4] input whose values are 0..15 row by row (so the 2×2 conv outputs are easy to compute by hand)."""
    return torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)


@pytest.fixture(scope="session")
def lite0() -> Inspector:
    return zoo.efficientnet_lite0(device="cpu")


@pytest.fixture(scope="session")
def cat():
    return zoo.sample_image("cat")


def hooks_left(model: nn.Module) -> int:
    """How many hooks of any kind remain on any module of `model`."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def model_state(model: nn.Module) -> dict:
    """Everything a call must leave as it was: weights, buffers, training flags, requires_grad, module structure."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "modules": [(name, type(m)) for name, m in model.named_modules()],
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["modules"] == after["modules"]
    assert before["state"].keys() == after["state"].keys()
    for key in before["state"]:
        assert torch.equal(before["state"][key], after["state"][key]), key


def assert_refused(inspector, bad: object, fix: str) -> None:
    """`inspector.predict(bad)` raises a one-line InputError matching `fix`, and leaves the model as it came."""
    from cnnwidgets import InputError

    before = model_state(inspector.model)
    with pytest.raises(InputError, match=fix) as raised:
        inspector.predict(bad)
    assert "\n" not in str(raised.value)
    assert hooks_left(inspector.model) == 0
    assert_same_state(before, model_state(inspector.model))
