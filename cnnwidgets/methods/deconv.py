"""Zeiler & Fergus's deconvnet projection: one unit of a layer, projected back to pixel space."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..backend import Inspector
from ..backend.gradients import check_rule_report, relu_rule
from ..backend.hooks import StopForward, eval_mode, forward_hooks
from ..backend.images import ImageLike
from ..errors import InputError, model_errors


def deconv_projections(
    inspector: Inspector,
    batch: torch.Tensor,
    layer: str,
    channels: torch.Tensor,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """[N,C,H,W] pixel-space projections of one unit per image of a preprocessed [N,C,H,W] batch.

    Image i keeps only unit (channels[i], positions[i]) of `layer` — by default that channel's strongest
    activation — and sends it back down (Zeiler & Fergus 2014): max-pools unpool through the switches recorded
    in the forward pass (the positions of the maxima), ReLUs rectify the signal going down, and convolutions
    apply their transposed filters. That is the backward pass with the deconvnet ReLU rule, so it works for any
    model whose activations are ReLUs (others, GELU or SiLU, are refused in one line); images do not interact (eval
    mode). The layer's output is read through its layout (`backend.layout`), so channels and positions of NHWC
    (ConvNeXt, Swin) and token (ViT) layers are those of its [C,H,W] map, as every view shows them.
    """
    info = inspector.layer(layer)
    module = inspector.model.get_submodule(info.module_name)
    channels = torch.as_tensor(channels).long().view(-1)
    if len(channels) != len(batch):
        raise InputError(f"{len(batch)} images but {len(channels)} channels; pass one channel per image")
    if int(channels.max()) >= info.shape[0] or int(channels.min()) < 0:
        raise InputError(f"channel {int(channels.max())} is out of range; layer {layer!r} has channels 0..{info.shape[0] - 1}")
    x = batch.detach().to(inspector.device).requires_grad_(True)
    output = info.to_map(_output_with_graph(inspector.model, x, module, info.call))
    if output.dim() != 4:
        raise InputError(f"layer {layer!r} has no spatial map; pick a conv, activation or pooling layer")
    maps = output[torch.arange(len(x)), channels.to(output.device)]  # [N, h, w]
    if positions is None:
        flat = maps.detach().flatten(1).argmax(1)
        positions = torch.stack([flat // maps.shape[2], flat % maps.shape[2]], 1)
    positions = torch.as_tensor(positions).long().view(-1, 2).to(output.device)
    units = maps[torch.arange(len(x)), positions[:, 0], positions[:, 1]]
    with torch.enable_grad():
        # weighting by the unit's own value sends the activation itself down, as the deconvnet does
        (projection,) = torch.autograd.grad((units * units.detach()).sum(), x)
    return projection.detach().cpu()


def deconv_projection(
    inspector: Inspector, image: object, layer: str, channel: int, position: tuple[int, int] | None = None
) -> torch.Tensor:
    """[C,H,W] deconvnet projection of one unit of `layer` for one image (see `deconv_projections`)."""
    positions = None if position is None else torch.tensor([position])
    batch = inspector.preprocess(cast(ImageLike, image))  # anything else is a one-line InputError from preprocess
    return deconv_projections(inspector, batch, layer, torch.tensor([channel]), positions)[0]


def projection_picture(projection: torch.Tensor) -> torch.Tensor:
    """[H,W,3] uint8 picture of a [C,H,W] projection, scaled symmetrically so that 128 means zero (gray for one
    channel): the sign of the signal stays readable and pictures of one projection compare across crops."""
    scaled = projection / (2 * projection.abs().max().clamp_min(1e-12)) + 0.5
    if scaled.shape[0] == 1:
        scaled = scaled.expand(3, -1, -1)
    return (scaled[:3] * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)


def _output_with_graph(model: nn.Module, x: torch.Tensor, module: nn.Module, call: int) -> torch.Tensor:
    """The output of `module`'s `call`-th call, with its graph back to `x` under the deconvnet ReLU rule; the
    forward stops there."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured.append(output)
        if len(captured) > call:
            raise StopForward

    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model), model_errors(tuple(x.shape)):
        with relu_rule(model, "deconv") as report, forward_hooks([(module, hook)]):
            try:
                model(x)
            except StopForward:
                pass
    if len(captured) <= call:
        raise InputError("the layer was not reached in the forward pass; pick a layer the image flows through")
    if report.applied or report.unsupported:  # no activation at all (a linear model) is fine: transposed filters
        check_rule_report(report, "deconv_projection")
    return captured[call]
