"""A generator of handwritten digits: the decoder of a small variational autoencoder trained on `digits()`.

It maps a latent code z of LATENT_DIM numbers (standard normal under the prior) to a 32×32 grayscale digit in
[0, 1]. `methods.maximize(inspector, target, prior=zoo.digits_generator())` optimizes z instead of pixels, so the
preferred input of a class stays a digit-like picture (Nguyen et al. 2016, "Synthesizing the preferred inputs for
neurons via deep generator networks", with a VAE decoder in place of their GAN: on 1,797 images a VAE trains
reliably in a minute on a CPU, a GAN does not). Weights (float16, about 0.1 MB) ship in `cnnwidgets/zoo/data/` and
are made by `python -m cnnwidgets.zoo.train_digits_generator`.
"""

from __future__ import annotations

import json
from functools import cache

import torch
from torch import nn

from ..errors import InputError
from .digits import DATA, DIGITS_SIZE

LATENT_DIM = 8
WEIGHTS = DATA / "digits_generator.pt"
INFO = DATA / "digits_generator.json"


class DigitsGenerator(nn.Module):
    """z [N, LATENT_DIM] -> FC to 64×4×4 -> three 2× transposed convs (32, 16, 1 channels) -> sigmoid: [N,1,32,32].

    `latent_dim` and `size` say what goes in and comes out (what `methods.maximize(prior=...)` reads)."""

    latent_dim = LATENT_DIM
    size = DIGITS_SIZE

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(LATENT_DIM, 64 * 4 * 4)
        self.up = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),   # 8×8
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),   # 16×16
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),               # 32×32
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid images [N,1,32,32] (what the training loss compares with the digits)."""
        return self.up(self.fc(z).view(-1, 64, 4, 4))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


@cache
def digits_generator_info() -> dict:
    """What the training script recorded: seed, epochs, losses, seconds."""
    if not INFO.is_file():
        raise InputError("the digits generator weights are missing; run `python -m cnnwidgets.zoo.train_digits_generator`")
    return json.loads(INFO.read_text())


def digits_generator() -> DigitsGenerator:
    """The shipped digits generator (a VAE decoder trained on `digits()`), in eval mode, on the CPU, with
    `requires_grad` off (it is a fixed prior: maximization optimizes its input only)."""
    if not WEIGHTS.is_file():
        raise InputError("the digits generator weights are missing; run `python -m cnnwidgets.zoo.train_digits_generator`")
    model = DigitsGenerator()
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return model.eval().requires_grad_(False)
