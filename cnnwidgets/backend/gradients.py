"""Gradients through the user's model without changing it: input gradients, ReLU backward rules, layer graphs.

Everything here runs the model in eval mode and takes gradients with `torch.autograd.grad` with respect to
the input (or a layer's output) only, so no `.grad` is ever written into the model's parameters and their
`requires_grad` flags stay as they are. Hooks live for one call, inside try/finally.

ReLU backward rules (guided backprop, deconvnet) are applied where the forward pass runs a ReLU-like
activation: at every `nn.ReLU`, `nn.ReLU6` and `nn.Hardtanh(0, max)` module (forward hooks plus a hook on
each call's output tensor, so a module called twice uses each call's own forward mask, and in-place modules
work), and at functional calls (`F.relu`, `torch.relu`, `x.relu_()`, `F.relu6`, `F.hardtanh(x, 0, 6)`) made
outside such modules, seen through a `TorchFunctionMode`. The rules, for a unit y = relu(x) (ReLU6: the
forward mask is 0 < x < 6 instead of x > 0), with g the gradient arriving at y:

- guided backprop (Springenberg et al. 2014): pass g where the forward mask holds *and* g > 0;
- deconvnet (Zeiler & Fergus 2014): pass relu(g), ignoring the forward mask.

A model whose forward runs no hookable ReLU, or runs other activations (SiLU, GELU, Hardswish, …) that the
rules do not cover, raises an InputError instead of returning a silently wrong map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InputError, model_errors
from .cache import graph_bytes
from .hooks import eval_mode
from .inspector import Inspector, class_scores

RULES = ("guided", "deconv")

_RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6}
_INPLACE_FUNCTIONS = {F.relu_, torch.relu_, torch.Tensor.relu_, F.hardtanh_}
_UNSUPPORTED_FUNCTIONS = {
    F.silu: "SiLU", F.gelu: "GELU", F.hardswish: "Hardswish", F.elu: "ELU", F.leaky_relu: "LeakyReLU",
    F.mish: "Mish", F.selu: "SELU", F.celu: "CELU", F.softplus: "Softplus", F.prelu: "PReLU", F.rrelu: "RReLU",
    F.hardsigmoid: "Hardsigmoid",
}


def relu_like(module: nn.Module) -> bool:
    """nn.ReLU, nn.ReLU6 and any nn.Hardtanh clipping at 0 below (a ReLU with a cap)."""
    return isinstance(module, nn.ReLU) or (isinstance(module, nn.Hardtanh) and module.min_val == 0)


class _Deconv(torch.autograd.Function):
    """Forward: the activation's output. Backward: relu of the incoming gradient, with no forward mask."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.clamp(min=0), None


def _positive(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


def _apply_rule(rule: str, pre: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The activation output to pass on, carrying `rule` in its backward."""
    if not output.requires_grad:
        return output
    if rule == "guided":
        # the activation's own backward applies its forward mask after this hook clamps the gradient
        output.register_hook(_positive)
        return output
    return _Deconv.apply(pre, output.detach())


def _is_relu_call(func: Callable, args: tuple, kwargs: dict) -> bool:
    if func in _RELU_FUNCTIONS:
        return True
    if func in (F.hardtanh, F.hardtanh_):
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)  # F.hardtanh passes its options as kwargs
        return low == 0
    return False


@dataclass
class RuleReport:
    """What a rule context saw during the forward: how many ReLU-like calls it changed, what it could not."""

    applied: int = 0
    unsupported: dict[str, int] | None = None


class _FunctionalRelus(TorchFunctionMode):
    """Applies the rule to functional ReLU calls made outside hooked modules; notes activations it cannot cover."""

    def __init__(self, rule: str, report: RuleReport) -> None:
        super().__init__()
        self.rule, self.report = rule, report
        self.depth = 0  # > 0 while inside a hooked ReLU module, whose own F.relu call the module hook handles

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth == 0:
            if _is_relu_call(func, args, kwargs):
                x = args[0]
                inplace = func in _INPLACE_FUNCTIONS or bool(kwargs.get("inplace", False))
                pre = x.clone() if inplace and self.rule == "deconv" else x
                self.report.applied += 1
                return _apply_rule(self.rule, pre, func(*args, **kwargs))
            name = _UNSUPPORTED_FUNCTIONS.get(func)
            if name is not None:
                self.report.unsupported[name] = self.report.unsupported.get(name, 0) + 1
        return func(*args, **kwargs)


@contextmanager
def relu_rule(model: nn.Module, rule: str | None) -> Iterator[RuleReport]:
    """Within the context, forward passes of `model` carry ReLU backward `rule` ("guided", "deconv" or None).

    Check the yielded report after the forward (`check_rule_report`): it counts the ReLU calls changed and any
    activation the rule does not cover.
    """
    report = RuleReport(0, {})
    if rule is None:
        yield report
        return
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES} or None, not {rule!r}")
    mode = _FunctionalRelus(rule, report)
    saved: list[torch.Tensor] = []  # pre-activation inputs of the module calls in progress (a stack)

    def before(module: nn.Module, inputs: tuple) -> None:
        mode.depth += 1
        x = inputs[0]
        # an in-place module overwrites its input; deconvnet needs the pre-activation connection, so keep a copy
        saved.append(x.clone() if rule == "deconv" and getattr(module, "inplace", False) and x.requires_grad else x)

    def after(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        mode.depth -= 1
        report.applied += 1
        return _apply_rule(rule, saved.pop(), output)

    modules = [module for module in model.modules() if relu_like(module)]
    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(after))
        with mode:
            yield report
    finally:
        for handle in handles:
            handle.remove()


def check_rule_report(report: RuleReport, method: str) -> None:
    """Raise if the rule was applied nowhere, or the model also ran activations the rule does not cover."""
    if report.unsupported:
        found = ", ".join(f"{name} ({count}×)" for name, count in report.unsupported.items())
        raise InputError(
            f"{method} changes the backward pass of ReLU and ReLU6 only, but this model also runs {found}; "
            "the map would mix rules silently, so use saliency or integrated_gradients for this model"
        )
    if report.applied == 0:
        raise InputError(
            f"{method} needs ReLU activations it can hook (nn.ReLU, nn.ReLU6, F.relu), and this model's forward ran none; "
            "use saliency or integrated_gradients for this model"
        )


def pick(scores: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the summed target scores, the targets): `targets` None means each row's top class."""
    if targets is None:
        targets = scores.detach().argmax(1)
    classes = scores.shape[1]
    if int(targets.max()) >= classes:
        raise InputError(f"class index {int(targets.max())} is out of range; pick 0..{classes - 1}")
    return scores.gather(1, targets.view(-1, 1).to(scores.device)).sum(), targets


class InputForward:
    """One forward pass kept with its autograd graph from the input to the class scores.

    `rule` ("guided", "deconv" or None) changes the backward through ReLU-like activations (see the module doc);
    it is fixed into the graph during this forward. The gradient of any class score w.r.t. the input then costs
    one backward, and switching class needs no new forward pass.
    """

    def __init__(self, model: nn.Module, batch: torch.Tensor, rule: str | None = None, method: str = "saliency") -> None:
        x = batch.detach().requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad(), eval_mode(model), model_errors(tuple(batch.shape)):
            with relu_rule(model, rule) as report:
                scores = class_scores(model(x))
        if rule is not None:
            check_rule_report(report, method)
        self.input: torch.Tensor = x
        self.scores: torch.Tensor = scores  # [N, classes], with the graph back to `input`

    def gradient(self, targets: torch.Tensor | None, keep: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(d score[target_i] / d image_i for each image, the targets used); `keep` keeps the graph for other classes.

        Taken with `torch.autograd.grad` w.r.t. the input only: the model's parameters get no `.grad`."""
        with torch.enable_grad():
            total, targets = pick(self.scores, targets)
            (grad,) = torch.autograd.grad(total, self.input, retain_graph=keep)
        return grad.detach(), targets


def input_gradients(
    model: nn.Module, batch: torch.Tensor, targets: torch.Tensor | None, rule: str | None = None, method: str = "saliency"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d score[target_i] / d image_i for each image of an [N,C,H,W] batch, the targets used), graph not kept."""
    return InputForward(model, batch, rule, method).gradient(targets, keep=False)


class LayerForward:
    """One forward pass kept with its autograd graph from one layer's output to the class scores.

    The part of the forward before the layer runs without recording a graph; from the layer on, gradients are
    recorded, so the gradient of any class score w.r.t. the layer's output costs one backward through the
    head only, and switching class needs no new forward pass. `to_map` turns the layer's output (and so its
    gradient) into [N,C,H,W] (see `backend.layout`), as pytorch-grad-cam's `reshape_transform` does.
    """

    def __init__(self, model: nn.Module, batch: torch.Tensor, module: nn.Module, call: int = 0,
                 to_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        calls = [0]
        leaves: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
            index = calls[0]
            calls[0] = index + 1
            if index != call or not isinstance(output, torch.Tensor):
                return None
            leaf = output.detach().requires_grad_(True)
            leaves.append(leaf)
            torch.set_grad_enabled(True)  # record the graph from here to the scores
            return leaf.clone()  # a non-leaf copy, so in-place ops after the layer leave `leaf` intact

        handle = module.register_forward_hook(hook)
        try:
            with torch.inference_mode(False), torch.no_grad(), eval_mode(model), model_errors(tuple(batch.shape)):
                try:
                    scores = class_scores(model(batch.detach()))
                finally:
                    torch.set_grad_enabled(False)
        finally:
            handle.remove()
        if not leaves:
            raise InputError("the chosen layer did not output a tensor in the forward pass; pick a conv layer or block")
        self.output: torch.Tensor = leaves[0]  # the layer's raw output, requires grad
        self.to_map = to_map or (lambda output: output)
        self.activation: torch.Tensor = self.to_map(self.output.detach())  # [N, C, h, w]
        self.scores: torch.Tensor = scores  # [N, classes], with the graph back to `output`

    def gradient(self, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(d score[target_i] / d activation_i as [N, C, h, w], the targets used); the graph is kept for other classes."""
        if not self.scores.requires_grad:
            raise InputError("the class scores do not depend on the chosen layer; pick a layer the prediction flows through")
        with torch.enable_grad():
            total, targets = pick(self.scores, targets)
            (grad,) = torch.autograd.grad(total, self.output, retain_graph=True)
        return self.to_map(grad.detach()), targets


def _graph_size(inspector: Inspector, purpose: tuple, shape: tuple[int, ...], held: list[torch.Tensor]) -> int:
    """`graph_bytes` of a kept forward, measured once per purpose and input shape while the weights stay the same:
    which tensors a forward saves depends on the model and the shapes, not on the values, and walking the graph
    (20 ms for EfficientNet-Lite0's input gradient at 224 px) would otherwise add a tenth to every new image."""
    model = inspector.model
    return inspector.memo(("graph bytes", *purpose, shape), lambda: graph_bytes(held, model.parameters()), nbytes=lambda _: 0)


def layer_forward(inspector: Inspector, batch: torch.Tensor, layer_name: str) -> LayerForward:
    """The LayerForward of a preprocessed [1,C,H,W] batch at layer `layer_name`, kept in the inspector's memo (sized by
    the tensors its graph holds) while image, layer and weights are unchanged."""
    info = inspector.layer(layer_name)
    model = inspector.model
    purpose = ("layer forward", info.name)
    return inspector.memo(purpose, lambda: LayerForward(model, batch, model.get_submodule(info.module_name), info.call, info.to_map),
                          image=batch,
                          nbytes=lambda kept: _graph_size(inspector, purpose, tuple(batch.shape), [kept.scores, kept.output, kept.activation]))


def input_forward(inspector: Inspector, batch: torch.Tensor, rule: str | None = None, method: str = "saliency") -> InputForward:
    """The InputForward of a preprocessed [1,C,H,W] batch under `rule`, kept in the inspector's memo while image and
    weights are unchanged. It always runs the model itself, never the folded scoring copy (`backend.folded`): folding changes
    float rounding, and a ReLU whose input sits within rounding of 0 flips, so a map would depend on whether an
    earlier call had made the copy (resnet18d: 8.3 % of the map's maximum at 9 pixels). The cost, EfficientNet-Lite0
    at 224 px on a loaded 2-core CPU (`bench/results/saliency.json`, one run): saliency 226 ms against 166 ms through
    the copy, guided backprop 278 against 165 ms; still 0.85× and 0.95× Captum's time."""
    purpose = ("input forward", rule)
    return inspector.memo(purpose, lambda: InputForward(inspector.model, batch, rule, method), image=batch,
                          nbytes=lambda kept: _graph_size(inspector, purpose, tuple(batch.shape), [kept.scores, kept.input]))
