"""Feature visualization and probes: steps per second of activation maximization and code inversion (against a
plain gradient-ascent loop, the way CS231n scripts do it), and the time of one invariance curve of 41 positions
per transformation (goal: under 3 s each on a 2-core CPU for EfficientNet-Lite0)."""

from __future__ import annotations

import time

import torch

from common import machine


def _steps_per_second(advance, steps: int, warmup: int = 2) -> float:
    advance(warmup)
    start = time.perf_counter()
    advance(steps)
    return steps / (time.perf_counter() - start)


def run() -> dict:
    from cnnwidgets import zoo
    from cnnwidgets.methods.image_params import ModelInput
    from cnnwidgets.methods.invariance import KINDS, invariance_curves
    from cnnwidgets.methods.invert import Inverter
    from cnnwidgets.methods.maximize import Maximizer

    inspector = zoo.efficientnet_lite0()
    device = inspector.device
    cat = zoo.sample_image("cat")
    steps = 10 if device.type == "cpu" else 50
    result: dict = {"name": "feature_visualization", "model": "EfficientNet-Lite0", "device": str(device)}

    for size in (128, 224):
        maximizer = Maximizer(inspector, "espresso", size=size, seed=0)
        result[f"maximize_steps_per_s_{size}px"] = round(_steps_per_second(lambda n: maximizer.step(n), steps), 2)

    # the plain way: pixels in [0, 1], Adam, class logit, no regularizers, a fresh graph per step
    model, to_model = inspector.model, ModelInput.of(inspector)
    image = torch.rand(1, 3, 224, 224, device=device).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.05)

    def plain(n: int) -> None:
        for _ in range(n):
            (gradient,) = torch.autograd.grad(-model(to_model(image))[0, 967], [image])
            image.grad = gradient
            optimizer.step()

    result["plain_gradient_ascent_steps_per_s_224px"] = round(_steps_per_second(plain, steps), 2)

    for layer in ("_stem_act", "_blocks.10", "_head_act"):
        inverter = Inverter(inspector, cat, layer)
        result[f"invert_steps_per_s_224px_{layer}"] = round(_steps_per_second(lambda n: inverter.step(n), steps), 2)

    invariance_curves(inspector, cat, "translate", values=[0.0, 1.0], progress=False)  # warm up
    curves = {}
    for kind in KINDS:
        start = time.perf_counter()
        invariance_curves(inspector, cat, kind, progress=False)
        curves[kind] = round(time.perf_counter() - start, 2)
    result["invariance_curve_41_positions_s"] = curves
    result["invariance_goal_s"] = 3.0
    result["machine"] = machine()
    return result
