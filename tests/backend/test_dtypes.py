"""Models of any floating dtype, channels-last, compiled and parallel-wrapped run every method and give the float32
model's answers (to their dtype's precision), leaving the model as it came; TorchScript is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import InputError, Inspector
from cnnwidgets import methods as M
from cnnwidgets.backend.preprocess import Preprocess

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test

PICTURE = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).train()  # as timm and torchvision constructors return them


VARIANTS = {
    "float16": lambda: net().half(),
    "bfloat16": lambda: net().bfloat16(),
    "float64": lambda: net().double(),
    "channels_last": lambda: net().to(memory_format=torch.channels_last),
    "DataParallel": lambda: nn.DataParallel(net()),
    "compiled": lambda: torch.compile(net()),
}
TOLERANCE = {"float16": 5e-2, "bfloat16": 1e-1}
"""Relative error of a map against the float32 model's: float16 has 11 significant bits, bfloat16 8, and input
gradients add up rounding over the backward pass (measured: float16 saliency 2.4e-2)."""

MAPS = {
    "logits": lambda i: i.logits(PICTURE),
    "activations": lambda i: i.activations(PICTURE, "3"),
    "saliency": lambda i: M.saliency(i, PICTURE, target=1),
    "guided_backprop": lambda i: M.guided_backprop(i, PICTURE, target=1),
    "integrated_gradients": lambda i: M.integrated_gradients(i, PICTURE, target=1, steps=8),
    "grad_cam": lambda i: M.grad_cam(i, PICTURE, target=1, layer="3"),
    "score_cam": lambda i: M.score_cam(i, PICTURE, target=1, layer="3", progress=False),
    "occlusion": lambda i: M.occlusion(i, PICTURE, target=1, patch=8, stride=8, progress=False),
    "deconv": lambda i: M.deconv_projection(i, PICTURE, "3", 0),
}
RUNS = {
    "smoothgrad": lambda i: M.smoothgrad(i, PICTURE, target=1, samples=3),
    "maximize": lambda i: M.maximize(i, layer="3", channel=0, steps=3, progress=False, size=32).images,
    "invert": lambda i: M.invert(i, PICTURE, "3", steps=3, progress=False).image,
    "fgsm": lambda i: M.fgsm(i, PICTURE).adversarial,
    "invariance": lambda i: M.invariance_curves(i, PICTURE, "translate", values=[0.0, 2.0], progress=False),
}


def inspector_of(model: nn.Module) -> Inspector:
    return Inspector(model, transform=Preprocess(resize=32, crop=32))


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    inspector = inspector_of(net())
    return {name: call(inspector).detach().float() for name, call in MAPS.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_method_matches_the_float32_model(variant, reference):
    model = VARIANTS[variant]()
    inner = getattr(model, "module", getattr(model, "_orig_mod", model))
    dtype = next(inner.parameters()).dtype
    before = model_state(inner)
    inspector = inspector_of(model)
    assert inspector.model is inner  # wrappers unwrapped: hooks go on the original modules
    tolerance = TOLERANCE.get(variant, 1e-4)
    for name, call in MAPS.items():
        result = call(inspector).detach()
        assert result.dtype in (torch.float32, dtype), name
        expected = reference[name]
        error = float((result.float() - expected).norm() / expected.norm().clamp_min(1e-12))
        assert error <= tolerance, f"{name}: relative error {error:.2e}"
    for name, call in RUNS.items():
        result = call(inspector)
        if isinstance(result, torch.Tensor):
            assert torch.isfinite(result.float()).all(), name
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(inner))
    assert next(inner.parameters()).dtype == dtype


def test_distributed_data_parallel_is_unwrapped(tmp_path, reference):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = nn.parallel.DistributedDataParallel(net())
        inspector = inspector_of(model)
        assert inspector.model is model.module
        torch.testing.assert_close(inspector.logits(PICTURE), reference["logits"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(M.grad_cam(inspector, PICTURE, target=1, layer="3"), reference["grad_cam"])
        assert hooks_left(model) == 0
    finally:
        dist.destroy_process_group()


def test_torchscript_is_refused_in_one_line():
    for scripted in (torch.jit.script(net()), torch.jit.trace(net().eval(), torch.rand(1, 3, 32, 32))):
        with pytest.raises(InputError, match="TorchScript model .* cannot be hooked .*; pass the nn.Module before") as raised:
            inspector_of(scripted)
        assert "\n" not in str(raised.value)
