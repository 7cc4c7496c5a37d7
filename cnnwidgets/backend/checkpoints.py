"""Training checkpoints from wherever users keep them: state dicts, files, or a folder of files."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..errors import InputError
from .images import all_finite

StateOrPath = Mapping[str, torch.Tensor] | str | os.PathLike
CheckpointSource = Mapping[int, StateOrPath] | Sequence[tuple[int, StateOrPath]] | str | os.PathLike

EPOCH_IN_NAME = re.compile(r"(?:epoch|ep|e)[_\-]?(\d+)", re.IGNORECASE)
WRAPPING_KEYS = ("state_dict", "model_state_dict", "model")


def load_checkpoints(source: CheckpointSource) -> dict[int, dict[str, torch.Tensor]]:
    """{epoch: state dict on the CPU} from {epoch: state or path}, [(epoch, state or path)], or a folder whose
    file names carry the epoch (`epoch_5.pt`, `model_e05.pth`, …). Files load with `weights_only=True`."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"no folder at {str(folder)!r}; pass a folder of checkpoint files or a list of (epoch, state)")
        files = sorted(p for p in folder.iterdir() if p.suffix in (".pt", ".pth"))
        pairs: list[tuple[int, StateOrPath]] = []
        for path in files:
            match = EPOCH_IN_NAME.findall(path.stem)
            if match:
                pairs.append((int(match[-1]), path))
        if not pairs:
            raise InputError(f"no checkpoint in {str(folder)!r} names its epoch; name files like 'epoch_5.pt' or pass (epoch, path) pairs")
    elif isinstance(source, Mapping):
        pairs = list(source.items())
    else:
        pairs = list(source)
    checkpoints = {}
    for epoch, state in pairs:
        if int(epoch) in checkpoints:
            raise InputError(f"epoch {epoch} is given twice; pass one checkpoint per epoch")
        checkpoints[int(epoch)] = _state(state)
    return checkpoints


def load_file(path: str | os.PathLike, what: str) -> object:
    """`torch.load(path, weights_only=True)` on the CPU, any failure (missing, truncated, not a torch file, a
    pickle that asks for code) as one InputError line naming the file and what is wrong. `what` names the kind
    of file in the message ("checkpoint", "index")."""
    if not Path(path).is_file():
        raise InputError(f"no {what} file at {str(path)!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - zip, pickle and torch errors alike: the file is unusable
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            first = "it holds Python objects other than tensors, which are not loaded for safety (weights_only=True)"
        else:
            with open(path, "rb") as handle:
                head = handle.read(16)
            if not head.startswith((b"PK", b"\x80")):  # neither torch's zip format nor its legacy pickle one
                first = "the file is empty" if not head else f"not a torch file: it starts with {head!r}"
        raise InputError(f"cannot read {str(path)!r} as a {what} ({first}); pass a file written by torch.save") from None


def _state(given: StateOrPath) -> dict[str, torch.Tensor]:
    source = f" in {str(given)!r}" if isinstance(given, (str, os.PathLike)) else ""
    state = load_file(given, "checkpoint") if isinstance(given, (str, os.PathLike)) else given
    for key in WRAPPING_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"a checkpoint must be a state dict (name -> tensor), e.g. model.state_dict(){source}")
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


def non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors of `state` holding NaN or infinite values (a diverged training run)."""
    return [name for name, tensor in state.items() if tensor.is_floating_point() and not all_finite(tensor)]
