"""Train the embedded action networks reproducibly and write their weights and motion.json to cnnwidgets/zoo/data/.

    python -m cnnwidgets.zoo.train_motion            # both networks, the shipped run (one thread, see THREADS)
    python -m cnnwidgets.zoo.train_motion --out DIR  # write elsewhere

Adam, lr 3e-3, batch 32, EPOCHS epochs, on `motion_clips("train")`, evaluated on the held-out `motion_clips("test")`.
Training runs on one thread so the float sums happen in one order: same seed, same torch version, same weights.
Weights are saved as float16 state dicts; the accuracies recorded are those of the saved weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .motion import DATA, MOTION_LABELS, NETWORKS, build, motion_clips
from .training import train_epoch

SEED = 0
BATCH_SIZE = 32
LR = 3e-3
EPOCHS = 12
THREADS = 1


def confusion(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[classes, classes] counts: row = true class, column = predicted."""
    with torch.inference_mode():
        predicted = torch.cat([model(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
    matrix = torch.zeros(len(MOTION_LABELS), len(MOTION_LABELS), dtype=torch.int64)
    matrix.index_put_((y, predicted), torch.ones_like(y), accumulate=True)
    return matrix


def train(network: str, epochs: int = EPOCHS, seed: int = SEED, limit: int | None = None, log: bool = True
          ) -> tuple[torch.nn.Module, list[dict]]:
    """Train one network (the first `limit` training clips only, for tests); return it in eval mode and its history."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        x, y = motion_clips("train").tensors()
        x, y = x[:limit], y[:limit]
        model = build(network)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        history = []
        for epoch in range(1, epochs + 1):
            history.append({"epoch": epoch, "loss": train_epoch(model, optimizer, x, y, generator, BATCH_SIZE)})
            if log:
                print(f"{network} epoch {epoch:2d}: loss {history[-1]['loss']:.4f}", flush=True)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    x_test, y_test = motion_clips("test").tensors()
    info = {"seed": SEED, "batch_size": BATCH_SIZE, "optimizer": "Adam", "lr": LR, "epochs": args.epochs,
            "threads": THREADS, "torch": torch.__version__, "labels": list(MOTION_LABELS), "networks": {}}
    for network in NETWORKS:
        started = time.perf_counter()
        model, history = train(network, args.epochs)
        state = {key: value.detach().to(torch.float16).clone() for key, value in model.state_dict().items()}
        torch.save(state, args.out / f"motion_{network}.pt")
        saved = build(network)
        saved.load_state_dict({key: value.float() for key, value in state.items()})
        matrix = confusion(saved.eval(), x_test, y_test)
        accuracy = float(matrix.diagonal().sum() / matrix.sum())
        info["networks"][network] = {"test_accuracy": round(accuracy, 4), "confusion": matrix.tolist(),
                                     "final_loss": round(history[-1]["loss"], 4),
                                     "seconds": round(time.perf_counter() - started, 1)}
        print(f"{network}: held-out accuracy {accuracy:.4f} in {info['networks'][network]['seconds']} s", flush=True)
    (args.out / "motion.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
