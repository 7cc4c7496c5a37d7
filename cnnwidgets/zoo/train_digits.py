"""Train the embedded digits CNN reproducibly and write its weights and checkpoints to cnnwidgets/zoo/data/.

    python -m cnnwidgets.zoo.train_digits            # the shipped run: about a minute on a 2-core CPU
    python -m cnnwidgets.zoo.train_digits --out DIR  # write elsewhere

Two runs: "main" (Adam, lr 1e-3, 30 epochs; checkpoints after epochs 1, 2, 5, 10, 20, 30) and "high_lr", a short
run with a deliberately too-high learning rate (Adam, lr 0.1: it never beats chance; checkpoints after epochs 1, 2, 5), so views of
training (FeatureEvolution) can show what a failed run looks like. Weights are saved as float16 state dicts (half
the size; the accuracies recorded are those of the saved float16 weights) and load with `weights_only=True`.
Same seed, same torch version, same machine: the same weights.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import torch

from .digits import DATA, RUNS, DigitsCNN, digits
from .training import train_epoch

SEED = 0
BATCH_SIZE = 32


class RunSettings(TypedDict):
    """One training run: Adam's learning rate and the epochs after which a checkpoint is saved."""

    lr: float
    checkpoints: list[int]


RUN_SETTINGS: dict[str, RunSettings] = {
    "main": {"lr": 1e-3, "checkpoints": [1, 2, 5, 10, 20, 30]},
    "high_lr": {"lr": 0.1, "checkpoints": [1, 2, 5]},
}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of `x` classified as `y`; the model's training flag is restored afterwards."""
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return float((model(x).argmax(1) == y).float().mean())
    finally:
        model.train(training)


def _as_saved(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to(torch.float16).clone() for key, value in model.state_dict().items()}


def train(lr: float = 1e-3, epochs: int = 30, checkpoints: Sequence[int] = (), seed: int = SEED,
          log: bool = True) -> tuple[DigitsCNN, dict[int, dict[str, torch.Tensor]], list[dict]]:
    """Train a DigitsCNN on the digits train split with Adam; return the model, the float16 state dicts saved
    after each epoch in `checkpoints`, and per-epoch history (loss, train and held-out test accuracy)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = digits("train").tensors()
    x_test, y_test = digits("test").tensors()
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    saved: dict[int, dict[str, torch.Tensor]] = {}
    history = []
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, optimizer, x_train, y_train, generator, BATCH_SIZE)
        record = {"epoch": epoch, "loss": loss, "train_accuracy": accuracy(model, x_train, y_train),
                  "test_accuracy": accuracy(model, x_test, y_test)}
        history.append(record)
        if log:
            print(f"lr {lr:g} epoch {epoch:2d}: loss {record['loss']:.4f}, train {record['train_accuracy']:.4f}, "
                  f"test {record['test_accuracy']:.4f}", flush=True)
        if epoch in checkpoints:
            saved[epoch] = _as_saved(model)
    model.eval()
    return model, saved, history


def saved_accuracy(state: dict[str, torch.Tensor], split: str = "test") -> float:
    """Accuracy on `split` of a saved (float16) state dict, loaded as the zoo loads it."""
    model = DigitsCNN()
    model.load_state_dict({key: value.float() for key, value in state.items()})
    x, y = digits(split).tensors()
    return accuracy(model, x, y)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help="where to write the weights (default: the package)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # one thread: the same sums in the same order on any machine with this torch
    info: dict[str, Any] = {"seed": SEED, "batch_size": BATCH_SIZE, "optimizer": "Adam", "torch": torch.__version__,
            "architecture": "conv3x3(16)-relu-maxpool2, conv3x3(32)-relu-maxpool2, conv3x3(32)-relu-maxpool2, fc 512-64, relu, fc 64-10",
            "input": "32x32 grayscale, (x/255 - 0.5) / 0.5", "split": "digits(): 80 % train / 20 % test, permutation seed 0",
            "runs": {}}
    for run, settings in RUN_SETTINGS.items():
        started = time.perf_counter()
        epochs = max(settings["checkpoints"])
        _, saved, history = train(settings["lr"], epochs, settings["checkpoints"])
        for epoch, state in saved.items():
            torch.save(state, args.out / f"{RUNS[run]}_e{epoch:02d}.pt")
        final = saved[epochs]
        torch.save(final, args.out / f"{RUNS[run]}.pt")
        info["runs"][run] = {
            "lr": settings["lr"], "epochs": epochs, "checkpoints": settings["checkpoints"],
            "test_accuracy": {str(epoch): round(saved_accuracy(state), 4) for epoch, state in saved.items()},
            "final_test_accuracy": round(saved_accuracy(final), 4),
            "final_train_accuracy": round(saved_accuracy(final, "train"), 4),
            "history": [{key: round(value, 4) if isinstance(value, float) else value for key, value in record.items()}
                        for record in history],
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{run}: held-out accuracy {info['runs'][run]['final_test_accuracy']:.4f}", flush=True)
    (args.out / "digits_cnn.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
