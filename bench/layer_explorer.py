"""LayerExplorer: forward latency, and a layer switch (trait change -> new image bytes) against the plain way,
a forward hook on the layer and a new forward pass per switch, as CS231n-style scripts do."""

from __future__ import annotations

import torch

from common import machine, median_ms


def run() -> dict:
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
        module = inspector.module(layers[next(step) % len(layers)])
        captured = []
        handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
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
