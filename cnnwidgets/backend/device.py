"""Where models run, in which dtype, and batch sizes that are fast there."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def best_device() -> torch.device:
    """CUDA when available, else Apple's MPS, else the CPU: where models cnnwidgets creates itself go."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model without any)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def dtype_of(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter or buffer (float32 for a model without any):
    the dtype its inputs are cast to (see `hooks.eval_mode`)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def unwrap(model: nn.Module) -> nn.Module:
    """The module that holds the layers: `.module` of DataParallel / DistributedDataParallel, `_orig_mod` of a
    `torch.compile`d model (hooks must sit on the original modules; the compiled graph would skip them).
    TorchScript models cannot be hooked and are refused."""
    while True:
        inner = model.module if isinstance(model, WRAPPERS) else getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    if isinstance(model, torch.jit.ScriptModule):
        from ..errors import InputError

        raise InputError(
            "a TorchScript model (torch.jit.script / torch.jit.trace) cannot be hooked to look inside; pass the "
            "nn.Module before scripting"
        )
    return model


def batch_size_for(device: torch.device) -> int:
    """A batch size that is fast on `device` for ImageNet-sized CNNs.

    Measured on a 2-core CPU with EfficientNet-Lite0: batch 4 costs 18.5 ms an image, batch 64 costs 106;
    accelerators want large batches.
    """
    return {"cuda": 64, "mps": 32}.get(device.type, 4)


def batches(n: int, size: int) -> list[slice]:
    """Slices that cover range(n) in chunks of at most `size`."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]
