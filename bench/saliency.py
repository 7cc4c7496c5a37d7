"""Saliency and CAM methods against their peers on EfficientNet-Lite0 at 224×224, same image, class and layer:
Captum `Saliency` and `GuidedBackprop`, pytorch-grad-cam `GradCAM` (on `_head_act`) and `ScoreCAM` (on the
320-channel `_blocks.15`, its default batch size 16). Ours and the peer's run alternately in each repeat, so
load on the machine hits both; medians and ratios (ours / peer, lower is better) are reported.

Ours run cold: the kept forward graphs (saliency, guided backprop, Grad-CAM) and Score-CAM's cached activations
and scores are dropped before each call. A class switch (what the widget does when you pick another class) is
timed separately.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
import warnings
from collections.abc import Callable

from common import machine


def paired_ms(ours: Callable[[], object], peer: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median milliseconds of `ours` and `peer`, run alternately (ours first, then peer first, …)."""
    for _ in range(warmup):
        ours(), peer()
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    for repeat in range(repeats):
        order = [("ours", ours), ("peer", peer)] if repeat % 2 == 0 else [("peer", peer), ("ours", ours)]
        for name, run in order:
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
    return statistics.median(times["ours"]), statistics.median(times["peer"])


def run() -> dict:
    from captum.attr import GuidedBackprop, Saliency
    from pytorch_grad_cam import GradCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cnnwidgets import zoo
    from cnnwidgets.methods import cam, gradients

    warnings.filterwarnings("ignore")
    load_before = [round(load, 2) for load in os.getloadavg()]
    inspector = zoo.efficientnet_lite0(device="cpu")
    batch = inspector.preprocess(zoo.sample_image("cat"))
    target = int(inspector.logits(batch).argmax())
    other = int(inspector.logits(batch).topk(2).indices[1])
    peer_model = copy.deepcopy(inspector.model)  # the peers write .grad into (and call .eval() on) their model
    results: dict[str, dict] = {}

    def record(name: str, peer: str, ours_ms: float, peer_ms: float, goal: float) -> None:
        results[name] = {"ours_ms": round(ours_ms, 1), "peer": peer, "peer_ms": round(peer_ms, 1),
                         "ratio": round(ours_ms / peer_ms, 3), "goal_ratio": goal}
        print(name, results[name], flush=True)

    def cold(method):
        def run():
            inspector.memo.discard("input forward")  # no kept forward graph: a forward and a backward, like the peer
            return method(inspector, batch, target)
        return run

    classes = iter(range(10**9))

    def class_switch_ms(method, **options) -> float:
        method(inspector, batch, target, **options)
        switch_ms, _ = paired_ms(lambda: method(inspector, batch, (target, other)[next(classes) % 2], **options),
                                 lambda: None, repeats=21)
        return round(switch_ms, 1)

    saliency_peer = Saliency(peer_model)
    record("saliency", "captum Saliency(abs=False)", *paired_ms(
        cold(gradients.saliency),
        lambda: saliency_peer.attribute(batch.clone().requires_grad_(), target=target, abs=False), repeats=21, warmup=3), 1.0)
    results["saliency"]["class_switch_ms"] = class_switch_ms(gradients.saliency)

    guided_peer = GuidedBackprop(peer_model)
    record("guided_backprop", "captum GuidedBackprop (hooks nn.ReLU only: none in Lite0, so a plain gradient)", *paired_ms(
        cold(gradients.guided_backprop),
        lambda: guided_peer.attribute(batch.clone().requires_grad_(), target=target), repeats=21, warmup=3), 1.0)
    results["guided_backprop"]["class_switch_ms"] = class_switch_ms(gradients.guided_backprop)

    layer = "_head_act"

    def grad_cam_cold():
        inspector.memo.discard("layer forward")
        return cam.grad_cam(inspector, batch, target, layer=layer)

    grad_cam_peer = GradCAM(model=peer_model, target_layers=[peer_model.get_submodule(layer)])
    record("grad_cam", f"pytorch-grad-cam GradCAM on {layer}", *paired_ms(
        grad_cam_cold, lambda: grad_cam_peer(input_tensor=batch, targets=[ClassifierOutputTarget(target)]),
        repeats=21, warmup=3), 0.6)
    grad_cam_peer.activations_and_grads.release()
    results["grad_cam"]["class_switch_ms"] = class_switch_ms(cam.grad_cam, layer=layer)

    score_layer = "_blocks.15"

    def score_cam_cold():
        inspector.memo.discard("score cam")
        inspector.memo.discard("activation")
        return cam.score_cam(inspector, batch, target, layer=score_layer, progress=False)

    score_cam_peer = ScoreCAM(model=peer_model, target_layers=[peer_model.get_submodule(score_layer)])
    import tqdm as tqdm_module

    quiet = tqdm_module.tqdm
    tqdm_module.tqdm = lambda iterable, *a, **k: iterable  # the peer's progress bar, off for timing
    try:
        record("score_cam", f"pytorch-grad-cam ScoreCAM on {score_layer} (320 channels), batch size 16", *paired_ms(
            score_cam_cold, lambda: score_cam_peer(input_tensor=batch, targets=[ClassifierOutputTarget(target)]),
            repeats=3, warmup=0), 0.5)
    finally:
        tqdm_module.tqdm = quiet
        score_cam_peer.activations_and_grads.release()
    switch_ms, _ = paired_ms(lambda: cam.score_cam(inspector, batch, (target, other)[next(classes) % 2], layer=score_layer,
                                                   progress=False), lambda: None, repeats=5)
    results["score_cam"]["class_switch_ms"] = round(switch_ms, 1)

    return {
        "name": "saliency",
        "model": "EfficientNet-Lite0, 224×224, scikit-image chelsea, batch 1, top class",
        "method": "ours and the peer alternate in each repeat; medians of 21 (Score-CAM: 3) repeats; ratio = ours / peer",
        "results": results,
        "load_average_1_5_15_min_at_start": load_before,
        "load_average_1_5_15_min_at_end": [round(load, 2) for load in os.getloadavg()],
        "machine": machine(),
    }
