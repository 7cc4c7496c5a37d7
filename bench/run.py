"""Benchmarks: cnnwidgets against the plain way, in one run, written to bench/results/<name>.json.

Run: .venv/bin/python bench/run.py [name ...]   (names: layer_explorer; default all)
Each entry reports medians over repeated runs and the ratio to the peer measured in the same run.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(run: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "device": "cpu", "processor": platform.processor() or platform.machine()}


def layer_explorer() -> dict:
    """Forward latency, and a LayerExplorer layer switch (trait change -> new image bytes) against the plain way:
    a forward hook on the layer and a new forward pass per switch, as the CS231n-style scripts do."""
    from cnnwidgets import LayerExplorer, zoo

    inspector = zoo.efficientnet_lite0(device="cpu")
    cat = zoo.sample_image("cat")
    batch = inspector.preprocess(cat)
    model = inspector.model
    widget = LayerExplorer(inspector, cat)
    layers = [layer["name"] for layer in widget.layers]
    step = iter(range(10**9))

    def switch() -> None:
        widget.layer = layers[next(step) % len(layers)]
        assert widget.maps["layer"] == widget.layer

    def hook_and_forward() -> None:
        name = inspector.layer(layers[next(step) % len(layers)]).module_name
        captured = []
        handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: captured.append(o.detach()))
        try:
            with torch.inference_mode():
                model(batch)
        finally:
            handle.remove()

    def forward() -> None:
        with torch.inference_mode():
            model(batch)

    forward_ms = median_ms(forward)
    switch_ms = median_ms(switch, repeats=len(layers))
    peer_ms = median_ms(hook_and_forward, repeats=len(layers))
    return {
        "name": "layer_explorer",
        "model": "EfficientNet-Lite0, 224×224, scikit-image chelsea, batch 1",
        "forward_ms": round(forward_ms, 2),
        "layer_switch_ms": round(switch_ms, 2),
        "peer": "forward hook + new forward pass per layer switch",
        "peer_layer_switch_ms": round(peer_ms, 2),
        "speedup_vs_peer": round(peer_ms / switch_ms, 2),
        "layers": len(layers),
        "machine": machine(),
    }


BENCHMARKS = {"layer_explorer": layer_explorer}

if __name__ == "__main__":
    RESULTS.mkdir(exist_ok=True)
    for name in sys.argv[1:] or list(BENCHMARKS):
        result = BENCHMARKS[name]()
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(json.dumps(result, indent=2, ensure_ascii=False))
