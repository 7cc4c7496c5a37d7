"""Context managers that touch the user's model only for the duration of one call, and always undo it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode, restoring each module's own `training` flag afterwards."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in flags:
            module.training = training


@contextmanager
def forward_hooks(hooks: list[tuple[nn.Module, Callable]], pre: bool = False) -> Iterator[None]:
    """Register (module, hook) pairs as forward (or forward-pre) hooks; remove all of them on exit, even on error."""
    handles = []
    try:
        for module, hook in hooks:
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class StopForward(Exception):
    """Raised by a capture hook once every requested output is in, to skip the rest of the forward pass."""


def capture_outputs(
    model: nn.Module, targets: dict[str, tuple[nn.Module, int]], batch: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Run `model` on `batch` once and return the outputs of the target modules, detached copies.

    `targets` maps a layer name to (module, call index): the n-th call of a module used several times in one
    forward. The forward stops as soon as all targets are captured. Copies guard against later in-place ops.
    """
    captured: dict[str, torch.Tensor] = {}
    wanted: dict[nn.Module, dict[int, str]] = {}
    for name, (module, call) in targets.items():
        wanted.setdefault(module, {})[call] = name
    calls: dict[nn.Module, int] = {}

    def make_hook(module: nn.Module) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            index = calls.get(module, 0)
            calls[module] = index + 1
            name = wanted[module].get(index)
            if name is not None:
                captured[name] = output.detach().clone()
            if len(captured) == len(targets):
                raise StopForward

        return hook

    with forward_hooks([(module, make_hook(module)) for module in wanted]):
        try:
            model(batch)
        except StopForward:
            pass
    return captured
