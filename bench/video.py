"""Video: a clip forward and a space-time Grad-CAM on torchvision's r3d_18 (random weights, seeded) for one
Kinetics-shaped clip, 16 frames of 112×112, against the plain computation in the same run:

- forward: `Inspector.logits` (preprocessed clip in, class scores out) against `model(clip)` in eval mode under
  `torch.inference_mode()`;
- Grad-CAM at `layer4`: `methods.grad_cam_3d` (cold: no kept forward graph) against pytorch-grad-cam's `GradCAM`,
  which handles 3-D inputs (channel weights averaged over T, H, W; maps resized with cubic splines).

Ours and the peer alternate in each repeat; medians and ratios (ours / peer, lower is better) are reported, with
the correlation of the two Grad-CAM maps as a check that both computed the same thing.
"""

from __future__ import annotations

import copy
import os
import warnings

import torch
from common import machine
from saliency import paired_ms

FRAMES, SIZE, REPEATS = 16, 112, 5


def run() -> dict:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models.video import R3D_18_Weights, r3d_18

    from cnnwidgets import Inspector
    from cnnwidgets.methods.video import grad_cam_3d

    warnings.filterwarnings("ignore")
    load_before = [round(load, 2) for load in os.getloadavg()]
    torch.manual_seed(0)
    model = r3d_18(weights=None).eval()
    weights = R3D_18_Weights.KINETICS400_V1
    inspector = Inspector(model, weights.transforms(), weights.meta["categories"])
    clip = torch.randn(1, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    target = int(inspector.logits(clip).argmax())
    peer_model = copy.deepcopy(model)  # pytorch-grad-cam writes .grad into its model
    results: dict[str, dict] = {}

    def record(name: str, peer: str, ours_ms: float, peer_ms: float) -> None:
        results[name] = {"ours_ms": round(ours_ms, 1), "peer": peer, "peer_ms": round(peer_ms, 1),
                         "ratio": round(ours_ms / peer_ms, 3)}
        print(name, results[name], flush=True)

    def plain_forward() -> torch.Tensor:
        with torch.inference_mode():
            return peer_model(clip)

    record("forward", "model(clip) under inference_mode", *paired_ms(lambda: inspector.logits(clip), plain_forward,
                                                                    repeats=REPEATS))

    def grad_cam_cold() -> torch.Tensor:
        inspector.memo.discard("layer forward")
        return grad_cam_3d(inspector, clip, target, layer="layer4")

    peer = GradCAM(model=peer_model, target_layers=[peer_model.layer4])
    targets = [ClassifierOutputTarget(target)]
    try:
        record("grad_cam_3d", "pytorch-grad-cam GradCAM on layer4 (3-D)", *paired_ms(
            grad_cam_cold, lambda: peer(input_tensor=clip, targets=targets), repeats=REPEATS))
        ours, theirs = grad_cam_cold().flatten(), torch.from_numpy(peer(input_tensor=clip, targets=targets)[0]).flatten()
    finally:
        peer.activations_and_grads.release()
    results["grad_cam_3d"]["map_correlation"] = round(float(torch.corrcoef(torch.stack([ours, theirs]))[0, 1]), 4)
    return {
        "name": "video",
        "model": f"torchvision r3d_18, random weights (seed 0), one clip 3×{FRAMES}×{SIZE}×{SIZE}, top class",
        "method": f"ours and the peer alternate in each repeat; medians of {REPEATS} repeats; ratio = ours / peer",
        "results": results,
        "load_average_1_5_15_min_at_start": load_before,
        "load_average_1_5_15_min_at_end": [round(load, 2) for load in os.getloadavg()],
        "machine": machine(),
    }
