"""Deconvnet projection: equal to an explicit unpool-rectify-transposed-conv computation, and using switches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnwidgets import Inspector
from cnnwidgets.methods.deconv import deconv_projection, deconv_projections

from tests.conftest import assert_same_state, hooks_left, model_state


def conv_relu_pool() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1), nn.ReLU())
    return model.eval()


def by_hand(model: nn.Sequential, x: torch.Tensor, channel: int) -> torch.Tensor:
    """Zeiler & Fergus's deconvnet written out: keep the strongest unit, rectify, transposed conv, unpool with the
    recorded switches, rectify, transposed conv."""
    conv1, _, pool, conv2, _ = model
    with torch.no_grad():
        a1 = torch.relu(conv1(x))
        p1, switches = F.max_pool2d(a1, 2, return_indices=True)
        a2 = torch.relu(conv2(p1))
        kept = torch.zeros_like(a2)
        flat = a2[0, channel].flatten().argmax()
        row, col = divmod(int(flat), a2.shape[3])
        kept[0, channel, row, col] = a2[0, channel, row, col]
        down = F.conv_transpose2d(torch.relu(kept), conv2.weight, padding=1)
        down = F.max_unpool2d(down, switches, 2, output_size=a1.shape[2:])
        return F.conv_transpose2d(torch.relu(down), conv1.weight, padding=1)[0]


def test_projection_equals_the_hand_computation():
    model = conv_relu_pool()
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    inspector = Inspector(model)
    for channel in (0, 1):
        torch.testing.assert_close(deconv_projection(inspector, x, "4", channel), by_hand(model, x, channel))


def test_switches_decide_the_support():
    """Lowering inputs that are not pooling maxima leaves the pooled values, the switches and so the projection's
    support unchanged."""
    model = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 1, 1, bias=False), nn.ReLU()).eval()
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    x = torch.rand(1, 1, 6, 6) + 1
    inspector = Inspector(model)
    projection = deconv_projection(inspector, x, "2", 0)
    support = projection != 0
    assert support.sum() == 1  # one unit above a 2×2 pool sees exactly one switch position
    lowered = x.clone()
    lowered[~support.unsqueeze(0)] -= 0.5  # every non-switch position drops; the maxima stay the maxima
    assert torch.equal(deconv_projection(inspector, lowered, "2", 0) != 0, support)


def test_batched_projections_match_single_ones_and_leave_the_model_alone():
    model = conv_relu_pool().train()
    before = model_state(model)
    inspector = Inspector(model)
    batch = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    together = deconv_projections(inspector, batch, "1", torch.tensor([0, 2, 1]))
    for index, channel in enumerate((0, 2, 1)):
        torch.testing.assert_close(together[index], deconv_projection(inspector, batch[index:index + 1], "1", channel))
    assert hooks_left(model) == 0 and all(p.grad is None for p in model.parameters())
    assert_same_state(before, model_state(model))
