"""Train the embedded digits generator (a VAE decoder) reproducibly and write its weights to cnnwidgets/zoo/data/.

    python -m cnnwidgets.zoo.train_digits_generator            # the shipped run: about two minutes on a 2-core CPU
    python -m cnnwidgets.zoo.train_digits_generator --out DIR  # write elsewhere

A variational autoencoder (Kingma & Welling 2014) on all 1,797 digits at 32×32: a conv encoder (16, 32, 64
channels, stride 2) to the mean and log-variance of an 8-number code, the `DigitsGenerator` decoder back, loss =
binary cross-entropy of the pixels + the KL divergence to N(0, I), Adam lr 2e-3, batch 64. Only the decoder is
saved (float16 state dict, loads with `weights_only=True`). One thread, same seed, same torch: the same weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .digits import DATA, digits
from .digits_generator import LATENT_DIM, DigitsGenerator

SEED = 0
EPOCHS = 150
BATCH_SIZE = 64
LR = 2e-3


class Encoder(nn.Module):
    """[N,1,32,32] in [0, 1] -> (mean, log-variance) of the code, [N, LATENT_DIM] each."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        )
        self.head = nn.Linear(64 * 4 * 4, 2 * LATENT_DIM)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.head(self.convs(x)).chunk(2, dim=1)
        return mean, log_var


def digit_pixels() -> torch.Tensor:
    """All 1,797 digits as [N,1,32,32] floats in [0, 1]."""
    return torch.from_numpy(digits().images).float().div(255).unsqueeze(1)


def train(epochs: int = EPOCHS, seed: int = SEED, log: bool = True) -> tuple[DigitsGenerator, list[dict]]:
    """Train the VAE; return the decoder (eval mode) and per-epoch mean losses (reconstruction, KL) per image."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = digit_pixels()
    encoder, decoder = Encoder(), DigitsGenerator()
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=LR)
    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        totals = [0.0, 0.0]
        for start in range(0, len(order), BATCH_SIZE):
            batch = x[order[start:start + BATCH_SIZE]]
            mean, log_var = encoder(batch)
            z = mean + torch.randn(mean.shape, generator=generator) * (0.5 * log_var).exp()
            reconstruction = F.binary_cross_entropy_with_logits(decoder.logits(z), batch, reduction="sum") / len(batch)
            kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum() / len(batch)
            optimizer.zero_grad()
            (reconstruction + kl).backward()
            optimizer.step()
            totals[0] += reconstruction.item() * len(batch)
            totals[1] += kl.item() * len(batch)
        record = {"epoch": epoch, "reconstruction": totals[0] / len(x), "kl": totals[1] / len(x)}
        history.append(record)
        if log and (epoch % 10 == 0 or epoch == 1):
            print(f"epoch {epoch:3d}: reconstruction {record['reconstruction']:.2f}, KL {record['kl']:.2f}", flush=True)
    return decoder.eval(), history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help="where to write the weights (default: the package)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # one thread: the same sums in the same order on any machine with this torch
    started = time.perf_counter()
    decoder, history = train(args.epochs)
    state = {key: value.detach().to(torch.float16).clone() for key, value in decoder.state_dict().items()}
    torch.save(state, args.out / "digits_generator.pt")
    info = {"seed": SEED, "epochs": args.epochs, "batch_size": BATCH_SIZE, "lr": LR, "latent_dim": LATENT_DIM,
            "torch": torch.__version__, "model": "VAE on all 1,797 digits at 32x32; decoder shipped (float16)",
            "final": {key: round(value, 3) for key, value in history[-1].items()},
            "seconds": round(time.perf_counter() - started, 1)}
    (args.out / "digits_generator.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"saved after {info['seconds']} s: {info['final']}", flush=True)


if __name__ == "__main__":
    main()
