"""Images made by a generator: activation maximization in a generator's latent space (Nguyen et al. 2016,
"Synthesizing the preferred inputs for neurons via deep generator networks").

`GeneratorParam` stands in for `image_params.ImageParam` in `maximize(..., prior=generator)`: the free tensor is a
batch of latent codes, and the images are what the generator makes of them, so the optimizer can only move along
the generator's image manifold. Each code is squashed elementwise into ±LATENT_BOUND by a scaled tanh, as Nguyen et
al. clip theirs: a code far outside the prior's typical range makes pictures the generator never learned.

A prior is any `torch.nn.Module` with an integer `latent_dim` that maps codes [N, latent_dim] to images [N,C,H,W] in
[0, 1] with C = 1 or 3 (`zoo.digits_generator()`). It is used as given and never modified: it runs in eval mode
(restored afterwards) and gradients go to the codes only.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F

from ..backend.hooks import eval_mode
from ..errors import InputError

LATENT_BOUND = 3.0
"""Codes stay within ±3 standard deviations of the N(0, I) prior, where the generator was trained."""


def check_prior(prior: object) -> torch.nn.Module:
    """`prior` if it can be used as a generator prior, else a one-line InputError saying what to pass."""
    latent_dim = getattr(prior, "latent_dim", None)
    if not isinstance(prior, torch.nn.Module) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise InputError("prior= must be a generator module with an integer latent_dim (codes [N, latent_dim] -> "
                         "images [N,C,H,W] in [0, 1]), e.g. zoo.digits_generator()")
    return prior


class GeneratorParam(torch.nn.Module):
    """`count` images of size×size made by `prior` from latent codes; calling it gives [count,3,size,size] in [0, 1].

    The codes are a plain leaf tensor of its own (`tensor`), started from the prior N(0, I) with `generator`."""

    def __init__(self, prior: torch.nn.Module, count: int, size: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.prior = check_prior(prior)
        self.size = size
        self.device = torch.device(device)
        self.prior_device = next((p.device for p in prior.parameters()), torch.device("cpu"))
        latent_dim = cast(int, self.prior.latent_dim)  # check_prior made sure it is an int
        self.tensor = torch.randn((count, latent_dim), generator=generator).to(self.prior_device).requires_grad_(True)

    def parameters_to_optimize(self) -> list[torch.Tensor]:
        return [self.tensor]

    def codes(self) -> torch.Tensor:
        """The latent codes the generator gets, [count, latent_dim] within ±LATENT_BOUND."""
        return LATENT_BOUND * torch.tanh(self.tensor / LATENT_BOUND)

    def forward(self) -> torch.Tensor:
        with eval_mode(self.prior):
            images = self.prior(self.codes())
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"the prior made images of shape {tuple(images.shape)}; it must make [N,1,H,W] or [N,3,H,W] in [0, 1]")
        if tuple(images.shape[-2:]) != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return images.expand(-1, 3, -1, -1).to(self.device)
