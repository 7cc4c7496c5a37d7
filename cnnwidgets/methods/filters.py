"""Filter weights as pictures: RGB for a first convolution, one slice or the mean over input channels deeper."""

from __future__ import annotations

import torch

from ..render import scale_to_uint8


def filter_images(weight: torch.Tensor, input_channel: int = -1) -> tuple[torch.Tensor, str]:
    """[O,kh,kw,c] uint8 pictures of a conv weight [O,I,kh,kw], and a note saying what they show.

    With 3 input channels and `input_channel` -1 the filters are RGB, each stretched to its own range
    (as in the CS231n figures of first-layer filters). Otherwise each shows one input channel's slice
    (`input_channel`) or the mean over input channels (-1), scaled symmetrically so 128 means zero: per filter,
    or for 1×1 kernels (a single number each) on one scale for the whole layer.
    """
    weight = weight.detach().float().cpu()
    if weight.dim() != 4:
        raise ValueError(f"a conv2d weight has 4 dimensions [O,I,kh,kw], not shape {tuple(weight.shape)}")
    in_channels = weight.shape[1]
    if input_channel == -1 and in_channels == 3:
        flat = weight.flatten(1)
        low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
        return scale_to_uint8(weight, low, high).permute(0, 2, 3, 1).contiguous(), "RGB, each filter scaled to its own range"
    if input_channel == -1:
        picked, note = weight.mean(1), f"mean over {in_channels} input channels"
    elif 0 <= input_channel < in_channels:
        picked, note = weight[:, input_channel], f"input channel {input_channel} of {in_channels}"
    else:
        raise ValueError(f"input channel {input_channel} is out of range; pick -1 (mean) or 0..{in_channels - 1}")
    if picked[0].numel() == 1:  # 1×1 kernels: one value per filter, so only a scale shared by the layer shows anything
        bound, scope = picked.abs().amax().clamp_min(1e-12), "one scale for the layer"
    else:
        bound, scope = picked.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1), "each filter scaled to its own |max|"
    return scale_to_uint8(picked, -bound, bound).unsqueeze(-1), f"{note}; 128 = 0 (blue < 0 < red), {scope}"
