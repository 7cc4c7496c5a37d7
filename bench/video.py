"""Video: a clip forward and a space-time Grad-CAM on torchvision's r3d_18 (random weights, seeded) for one
Kinetics-shaped clip, 16 frames of 112×112, against the plain computation in the same run:

- forward: `Inspector.logits` (preprocessed clip in, class scores out) against `model(clip)` in eval mode under
  `torch.inference_mode()`;
- Grad-CAM at `layer4`: `methods.grad_cam_3d` (cold: no kept forward graph) against pytorch-grad-cam's `GradCAM`,
  which handles 3-D inputs (channel weights averaged over T, H, W; maps resized with cubic splines).

Ours and the peer alternate in each repeat; medians and ratios (ours / peer, lower is better) are reported, with
the correlation of the two Grad-CAM maps as a check that both computed the same thing.

The widgets' waiting times, at one and at two threads (issue #15: react in well under a second, progress on
anything longer), each against what it replaced, on the same model and clip:

- frame_spans (LayerExplorer's first pick of a layer): `methods.temporal.frame_spans` at `layer1` (the receptive
  field in time on the positive twin, 8-px clips) against the earlier probe (noise on each of the T frames in turn,
  T+1 forwards up to the layer on a 32-px centre crop; `earlier_probe_spans` below), with the spans equal;
- class_evidence (ConfusionView): `methods.video.class_evidence` at `layer4`, cold, against the same plus the
  separate `inspector.logits` forward it made before for the scores;
- tube map (OcclusionSlider on the zoo's two-stream clip, patch 8, stride 4, 4 frames, every first frame): the
  longest step `tube_occlusion_steps` blocks the kernel for, against the whole map in one step as before.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
import warnings

import torch
from common import machine
from saliency import paired_ms

FRAMES, SIZE, REPEATS = 16, 112, 5
WAIT_REPEATS = 3
NOISE_STD, PROBE_SIDE, CHANGE_TOLERANCE = 1.0, 32, 1e-4


def earlier_probe_spans(inspector, batch: torch.Tensor, layer: str) -> list[list[int]]:
    """The spans as `frame_spans` measured them before: strong noise on each input frame in turn, one batched
    forward of T+1 clips up to the layer on a 32-px centre crop; a step covers the frames whose noise moves it."""
    from cnnwidgets.backend.device import batch_size_for, batches
    from cnnwidgets.backend.hooks import capture_outputs, eval_mode

    info = inspector.layer(layer)
    height, width = batch.shape[-2:]
    top, left = max(0, (height - PROBE_SIDE) // 2), max(0, (width - PROBE_SIDE) // 2)
    batch = batch[..., top:top + PROBE_SIDE, left:left + PROBE_SIDE]
    length = batch.shape[2]
    noise = torch.randn(batch.shape[1:], generator=torch.Generator().manual_seed(0)) * NOISE_STD
    probes = batch.repeat(length + 1, 1, 1, 1, 1)
    for frame in range(length):
        probes[frame + 1, :, frame] += noise[:, frame]
    model = inspector.model
    tap = {info.name: (model.get_submodule(info.module_name), info.call)}
    outputs = []
    with eval_mode(model), torch.inference_mode():
        for part in batches(len(probes), batch_size_for(inspector.device)):
            outputs.append(info.to_map(capture_outputs(model, tap, probes[part])[info.name]).float())
    maps = torch.cat(outputs)
    change = (maps[1:] - maps[:1]).abs().amax((1, 3, 4))
    depends = change > CHANGE_TOLERANCE * maps[0].abs().max().clamp_min(1e-12)
    spans = []
    for step in range(maps.shape[2]):
        frames = depends[:, step].nonzero().flatten().tolist()
        spans.append([frames[0], frames[-1]] if frames else [])
    return spans


def longest_step_ms(steps) -> tuple[float, float]:
    """(longest step, all steps) in ms of a method's `*_steps` generator run to the end."""
    longest, total = 0.0, 0.0
    while True:
        started = time.perf_counter()
        try:
            next(steps)
        except StopIteration:
            return longest, total + (time.perf_counter() - started) * 1000
        spent = (time.perf_counter() - started) * 1000
        longest, total = max(longest, spent), total + spent


def waiting_times(inspector, clip: torch.Tensor, target: int, threads: int, record) -> None:
    """The rows of the widgets' waiting times (see the module doc) at `threads` threads."""
    from cnnwidgets import zoo
    from cnnwidgets.backend import gradients as backend_gradients
    from cnnwidgets.methods.temporal import frame_spans
    from cnnwidgets.methods.video import class_evidence, tube_occlusion, tube_occlusion_steps

    torch.set_num_threads(threads)
    suffix = f"{threads}_thread{'s' if threads > 1 else ''}"
    spans = frame_spans(inspector, clip, "layer1")
    assert spans == earlier_probe_spans(inspector, clip, "layer1"), "the two ways give other spans"
    record(f"frame_spans_layer1_{suffix}", "the earlier probe: T+1 noisy clips up to layer1 on a 32-px crop",
           *paired_ms(lambda: frame_spans(inspector, clip, "layer1"), lambda: earlier_probe_spans(inspector, clip, "layer1"),
                      repeats=WAIT_REPEATS))
    second = (target + 1) % 400

    def evidence() -> object:
        backend_gradients._KEPT_FORWARDS.clear()
        return class_evidence(inspector, clip, target, second, layer="layer4")

    def evidence_and_logits() -> object:
        found = evidence()
        inspector.logits(clip)  # the scores' separate forward of before
        return found

    record(f"class_evidence_{suffix}", "class_evidence with the separate logits forward it made before",
           *paired_ms(evidence, evidence_and_logits, repeats=WAIT_REPEATS))
    two_stream = zoo.motion_cnn("two_stream")
    motion_clip = two_stream.preprocess(zoo.motion_clips("test")[4][0])
    settings = {"patch": 8, "stride": 4, "frames": 4, "frame_stride": 1}
    longest = []
    whole = []
    for _ in range(WAIT_REPEATS):
        started = time.perf_counter()
        tube_occlusion(two_stream, motion_clip, **settings)
        whole.append((time.perf_counter() - started) * 1000)
        longest.append(longest_step_ms(tube_occlusion_steps(two_stream, motion_clip, **settings))[0])
    record(f"tube_map_longest_step_{suffix}", "the whole tube map in one step, as before",
           statistics.median(longest), statistics.median(whole))


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
    threads = torch.get_num_threads()
    for count in (1, 2):
        waiting_times(inspector, clip, target, count, record)
    torch.set_num_threads(threads)
    return {
        "name": "video",
        "model": f"torchvision r3d_18, random weights (seed 0), one clip 3×{FRAMES}×{SIZE}×{SIZE}, top class",
        "method": f"ours and the peer alternate in each repeat; medians of {REPEATS} repeats; ratio = ours / peer",
        "results": results,
        "load_average_1_5_15_min_at_start": load_before,
        "load_average_1_5_15_min_at_end": [round(load, 2) for load in os.getloadavg()],
        "machine": machine(),
    }
