"""One epoch of classifier training, as the embedded networks' training scripts run it (`train_digits`,
`train_motion`): the same loop, so a fix to one is a fix to both and their shipped weights stay reproducible."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator, batch_size: int) -> float:
    """Train `model` in training mode for one epoch of cross-entropy over (`x`, `y`), shuffled by `generator`, in
    batches of `batch_size`; returns the epoch's mean loss per example. The draws from `generator` and the order of
    the float sums are fixed, so the same seed on the same thread count gives the same weights."""
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(order)
