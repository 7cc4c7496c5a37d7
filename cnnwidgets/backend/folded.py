"""A private, faster copy of the user's model for forward passes that need class scores only.

In eval mode a BatchNorm that directly follows a convolution is an affine map per channel, so it can be folded
into that convolution's weights and bias: the copy skips one full pass over every such activation map. timm's
`BatchNormAct2d` (a BatchNorm2d that also runs its dropout and activation) folds too, its activation kept: timm
efficientnet_b0's batch-4 forward at 224 px went from 53 to 41 ms when it did (it had not been folded at all). The copy
is also run in channels-last memory layout, which the CPU convolution kernels prefer. Together this makes a
forward of EfficientNet-Lite0 or a ResNet markedly faster (batch 4, 224 px, one thread, fastest of 5 interleaved
runs on a loaded 2-core CPU, 2026-11-30: model / folded / folded channels-last: timm resnet50 0.97 / 0.66 / 0.60 s,
timm efficientnet_b0 0.40 / 0.30 / 0.28 s, Lite0 0.27 / 0.21 / 0.11 s; channels-last won on each, so it is not
chosen per model); Score-CAM, occlusion by full forwards and every batch of
logits use it, for class scores only. Folding changes the floating-point rounding only (measured: largest logit
difference 4.4e-6 on EfficientNet-Lite0's scores of up to 9.1, 4.8e-7 relative; resnet18d 3.4e-7 relative), and
`fast_copy` checks the copy against the model on the input it is built for before anyone uses it. Gradient methods
never use it: rounding flips a ReLU whose input is within rounding of 0, so a saliency map would depend on whether
an earlier call had made the copy (`backend.gradients.input_forward`).

The user's model is never changed: the copy is a deep copy. A model carrying hooks or parametrizations (pruning,
weight norm) is not copied, because its forward does more than its modules' weights say; it runs as it is, as
does a model that cannot be deep-copied. The copy holds a second set of weights while the weights stay the same.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode

from .hooks import eval_mode

TOLERANCE = 1e-4
"""Largest difference allowed between the copy's and the model's class scores, relative to their scale."""


def has_hooks(model: nn.Module) -> bool:
    """Whether any module carries forward, pre-forward or backward hooks, or a parametrization."""
    for module in model.modules():
        if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or getattr(module, "_backward_pre_hooks", None):
            return True
        if parametrize.is_parametrized(module):
            return True
    return False


class _Uses(TorchFunctionMode):
    """Counts how often each tensor of one forward pass is read by a torch function that makes a tensor of it
    (reading its size or dtype does not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[int, int] = {}
        self.kept: list[torch.Tensor] = []  # keeps every seen tensor alive, so no id is reused during the pass

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        made = isinstance(result, torch.Tensor) or (
            isinstance(result, (tuple, list)) and any(isinstance(item, torch.Tensor) for item in result))
        if made:
            for value in (*args, *kwargs.values()):
                if isinstance(value, torch.Tensor):
                    self.counts[id(value)] = self.counts.get(id(value), 0) + 1
                    self.kept.append(value)
        return result


def foldable_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, batch-norm name) pairs where the batch norm is the only reader of the convolution's output, each
    module called once per forward: the pairs whose folding leaves the model's function unchanged."""
    names = {module: name for name, module in model.named_modules()}
    outputs: dict[int, nn.Module] = {}
    inputs: dict[nn.Module, int] = {}
    calls: dict[nn.Module, int] = {}
    handles = []

    def after_conv(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        outputs[id(output)] = module

    def before_norm(module: nn.Module, args: tuple) -> None:
        calls[module] = calls.get(module, 0) + 1
        inputs[module] = id(args[0])

    uses = _Uses()
    try:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                handles.append(module.register_forward_hook(after_conv))
            elif (isinstance(module, nn.BatchNorm2d) and module.track_running_stats and module.running_mean is not None
                  and (type(module) is nn.BatchNorm2d or _norm_and_act(module))):
                handles.append(module.register_forward_pre_hook(before_norm))
        with uses:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for norm, tensor in inputs.items():
        conv = outputs.get(tensor)
        if conv is not None and calls[conv] == 1 and calls[norm] == 1 and uses.counts.get(tensor) == 1:
            pairs.append((names[conv], names[norm]))
    return pairs


class AfterNorm(nn.Module):
    """What a folded norm-and-activation module (timm's `BatchNormAct2d`: a BatchNorm2d subclass that runs its `drop`
    and `act` children after normalizing) still does: those children, under the same names, so layer names such as
    `bn1.act` stay valid in the copy."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(batch))


def _norm_and_act(norm: nn.BatchNorm2d) -> bool:
    """Whether `norm` is a norm-and-activation subclass: its only children are `drop` and `act` (`fast_copy` checks
    the copy's scores, so a subclass that does more is caught)."""
    return {name for name, _child in norm.named_children()} == {"drop", "act"}


def _after_norm(norm: nn.BatchNorm2d) -> nn.Module:
    """The module that takes a folded batch norm's place: nothing for a plain BatchNorm2d, its dropout and activation
    for a norm-and-activation subclass."""
    return AfterNorm(norm.get_submodule("drop"), norm.get_submodule("act")) if _norm_and_act(norm) else nn.Identity()


def folded_copy(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """A deep copy of `model` in eval mode with each (conv, batch norm) pair folded into the conv."""
    folded = copy.deepcopy(model).eval()
    for conv_name, norm_name in pairs:
        conv, norm = folded.get_submodule(conv_name), folded.get_submodule(norm_name)
        # foldable_pairs pairs only Conv2d with BatchNorm2d tracking running statistics
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
        assert norm.running_mean is not None and norm.running_var is not None
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                            norm.weight, norm.bias)
        conv.weight, conv.bias = weight, bias
        parent, _, name = norm_name.rpartition(".")
        setattr(folded.get_submodule(parent), name, _after_norm(norm))
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


class ChannelsLast(nn.Module):
    """Runs `inner` (whose weights are in channels-last layout) on channels-last inputs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, batch: torch.Tensor) -> object:
        return self.inner(batch.contiguous(memory_format=torch.channels_last))


def _channels_last_output(folded: nn.Module, example: torch.Tensor) -> object | None:
    """The output of `folded` (a channels-last copy) run on `example` as channels-last, or None where that layout
    fails (the output is the copy's check, so the copy is not run once more for it). A RuntimeError is tried twice: the
    model's own forward may have failed for a reason of its own (an interrupted data pipeline, a flaky custom op),
    and a copy kept in the usual layout for that one fault would lose the fast path for as long as the weights live;
    a layout the model forbids fails both times."""
    for _attempt in range(2):
        try:
            return ChannelsLast(folded)(example)
        except RuntimeError:
            continue
    return None


def fast_copy(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """A folded copy of `model` (run channels-last where the model accepts it) that gives the same class scores on
    `example` ([N,C,H,W]), or None where there is nothing to gain or it cannot be trusted (hooks,
    parametrizations, nothing to fold, scores that differ)."""
    from .inspector import class_scores

    if has_hooks(model) or not any(isinstance(module, nn.BatchNorm2d) for module in model.modules()):
        return None  # nothing can fold, so no traced forward to find out (ConvNeXt, ViT: 0.2-0.3 s of a first call)
    with eval_mode(model), torch.inference_mode():
        pairs = foldable_pairs(model, example)
        if not pairs:
            return None
        reference = class_scores(model(example))
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, so the copy can be traced and keyed
            try:
                folded = folded_copy(model, pairs).to(memory_format=torch.channels_last)
            except (TypeError, RuntimeError, copy.Error):  # a model holding something deepcopy cannot copy
                return None
        output = _channels_last_output(folded, example)
        if output is not None:
            folded = ChannelsLast(folded)
        else:  # the model views a map in a way channels-last forbids: keep the usual layout
            with torch.inference_mode(False), torch.no_grad():
                folded = folded.to(memory_format=torch.contiguous_format)
            output = folded(example)
        scores = class_scores(output)
    if scores.shape != reference.shape:
        return None
    scale = max(1.0, float(reference.abs().max()))
    if not float((scores - reference).abs().max()) <= TOLERANCE * scale:
        return None
    return folded
