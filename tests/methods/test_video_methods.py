"""Methods in space-time: saliency and Grad-CAM against hand computations and pytorch-grad-cam, tube occlusion
against brute force, maximization with the slowness prior, class evidence on the embedded confusable pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import Inspector, methods, zoo
from cnnwidgets.backend.clips import ClipPreprocess
from cnnwidgets.errors import InputError
from cnnwidgets.methods.video import (
    class_evidence,
    clip_saliency,
    grad_cam_3d,
    maximize_clip,
    tube_occlusion,
)
from cnnwidgets.zoo.motion import CONFUSABLE, MOTION_LABELS

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


class Same3D(nn.Module):
    """conv 3×3×3 'same' (4 filters, seeded random weights) -> ReLU -> global average -> linear to 3 classes: the
    ReLU's map has the clip's own T, H, W, so Grad-CAM needs no resizing."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


@pytest.fixture
def same3d() -> Inspector:
    return Inspector(Same3D(), ClipPreprocess(resize=None, crop=None, mean=(0, 0, 0), std=(1, 1, 1)))


@pytest.fixture
def clip() -> torch.Tensor:
    return torch.rand(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def hand_cam(model: Same3D, clip: torch.Tensor, target: int) -> torch.Tensor:
    activation = model.relu(model.conv(clip[None])).detach().requires_grad_(True)
    score = model.fc(model.pool(activation).flatten(1))[0, target]
    (grads,) = torch.autograd.grad(score, activation)
    return (grads[0].mean((1, 2, 3)).view(-1, 1, 1, 1) * activation[0]).sum(0).clamp(min=0).detach()


def test_grad_cam_3d_matches_hand_computation_and_pytorch_grad_cam(same3d: Inspector, clip: torch.Tensor) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = same3d.model
    before = model_state(model)
    for target in range(3):
        ours = grad_cam_3d(same3d, clip, target, layer="relu", upsample=False)
        assert ours.shape == (4, 8, 8)
        assert torch.allclose(ours, hand_cam(model, clip, target), atol=1e-5)
        assert torch.allclose(grad_cam_3d(same3d, clip, target, layer="relu"), ours, atol=1e-5)  # same size: no resizing
    assert not torch.allclose(hand_cam(model, clip, 0), hand_cam(model, clip, 1), atol=1e-3)  # classes differ
    reference_model = Same3D()
    with GradCAM(reference_model, target_layers=[reference_model.relu]) as cam:
        theirs = cam(clip[None], targets=[ClassifierOutputTarget(1)])[0]  # min-max normalized, [T,H,W]
    ours = grad_cam_3d(same3d, clip, 1, layer="relu")
    ours = (ours - ours.min()) / (ours.max() - ours.min() + 1e-7)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


def test_grad_cam_3d_on_r3d_18_agrees_with_pytorch_grad_cam() -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models.video import r3d_18

    torch.manual_seed(0)
    model = r3d_18(weights=None).eval()
    inspector = Inspector(model)
    before = model_state(model)
    clip = torch.randn(3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = grad_cam_3d(inspector, clip, 3, layer="layer3", upsample=False)
    assert ours.shape == (2, 4, 4) and ours.max() > 0
    assert grad_cam_3d(inspector, clip, 3, layer="layer3").shape == (8, 32, 32)
    targets = [ClassifierOutputTarget(3)]
    with GradCAM(model, target_layers=[model.layer3]) as cam:
        cam(clip[None], targets=targets)  # fills its activations and gradients; its map at the layer's resolution:
        recorded = cam.activations_and_grads
        activations, grads = recorded.activations[0].numpy(), recorded.gradients[0].numpy()
        theirs = cam.get_cam_image(clip[None], model.layer3, targets, activations, grads, False)[0]
    np.testing.assert_allclose(ours.numpy(), np.maximum(theirs, 0), rtol=1e-4, atol=1e-6 * float(ours.max()))
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


def test_clip_saliency_is_the_input_gradient(same3d: Inspector, clip: torch.Tensor) -> None:
    x = clip[None].clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(same3d.model(x)[0, 2], x)
    assert torch.allclose(clip_saliency(same3d, clip, 2), grads[0].abs().amax(0), atol=1e-6)


def test_tube_occlusion_is_exact_against_brute_force(same3d: Inspector, clip: torch.Tensor) -> None:
    model = same3d.model
    before = model_state(model)
    found = tube_occlusion(same3d, clip, 0, patch=4, frames=2, stride=2, frame_stride=1, baseline=0.5, batch_size=5)
    assert found.drops.shape == (3, 3, 3)
    with torch.no_grad():
        clean = model(clip[None])[0, 0]
        for i, t in enumerate(found.starts[0]):
            for j, y in enumerate(found.starts[1]):
                for k, x in enumerate(found.starts[2]):
                    occluded = clip.clone()
                    occluded[:, t:t + 2, y:y + 4, x:x + 4] = 0.5
                    assert float(found.drops[i, j, k]) == pytest.approx(float(clean - model(occluded[None])[0, 0]), abs=1e-5)
    # the voxel (0, 0, 0) is covered by the first tube only; the voxel (1, 3, 3) by the tubes starting at 0 and 1 in
    # time and at 0 and 2 in space (rows and columns)
    assert float(found.map[0, 0, 0]) == pytest.approx(float(found.drops[0, 0, 0]))
    assert float(found.map[1, 3, 3]) == pytest.approx(float(found.drops[:2, :2, :2].mean()), abs=1e-6)
    assert found.drops.abs().max() > 0
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


def test_image_methods_refuse_image_models(tiny) -> None:
    with pytest.raises(InputError, match="needs a video model"):
        grad_cam_3d(Inspector(tiny), torch.zeros(1, 4, 4))


@pytest.fixture(scope="module")
def c3d() -> Inspector:
    return zoo.motion_cnn("c3d")


@pytest.fixture(scope="module")
def two_stream() -> Inspector:
    return zoo.motion_cnn("two_stream")


def test_maximize_raises_the_objective_and_the_slowness_prior_slows_the_clip(c3d: Inspector) -> None:
    before = model_state(c3d.model)
    result = methods.maximize(c3d, "right", steps=24, lr=0.1)  # the image call, dispatched to space-time
    assert result.clip.shape == (1, 3, 16, 32, 32) and result.frames.shape == (16, 32, 32, 3)
    assert result.history[-1] > result.history[0] + 1
    fast = maximize_clip(c3d, layer="features.conv2", channel=3, steps=24, lr=0.1)
    slow = maximize_clip(c3d, layer="features.conv2", channel=3, steps=24, lr=0.1, temporal=1000.0)
    assert fast.history[-1] > fast.history[0] and slow.history[-1] > slow.history[0]
    assert slow.frame_change < 0.5 * fast.frame_change
    assert hooks_left(c3d.model) == 0
    assert_same_state(before, model_state(c3d.model))


def test_two_stream_maximization_optimizes_appearance_and_motion_jointly(two_stream: Inspector) -> None:
    before = model_state(two_stream.model)
    result = methods.maximize(two_stream, "rotate clockwise", steps=16, lr=0.1, spatial=1.0)
    assert result.motion is not None and result.motion.shape == (1, 3, 15, 32, 32)
    assert result.history[-1] > result.history[0] + 1
    motion_only = maximize_clip(two_stream, layer="motion.conv3", channel=0, steps=8, lr=0.1)
    assert motion_only.history[-1] > motion_only.history[0]
    assert hooks_left(two_stream.model) == 0
    assert_same_state(before, model_state(two_stream.model))


def test_class_evidence_on_the_confusable_pair(two_stream: Inspector) -> None:
    clips = zoo.motion_clips("test")
    first, second = CONFUSABLE
    clip = next(c for c, label in clips if MOTION_LABELS[label] == first and two_stream.predict(c, 1)[0][0] == first)
    model = two_stream.model
    before = model_state(model)
    evidence = class_evidence(two_stream, clip, first, second)
    assert evidence.layer == "motion.conv3" and evidence.first_map.shape == (16, 32, 32)
    assert torch.equal(evidence.difference, evidence.first_map - evidence.second_map)
    assert evidence.scores[0] > evidence.scores[1]
    # the difference is the (unrectified) Grad-CAM of the score difference, computed here by hand at motion.conv3
    batch = two_stream.preprocess(clip)
    with torch.no_grad():
        activation = model.motion.conv3(model.motion.pool(model.motion.conv2(model.motion.conv1(model.difference(batch)))))
    activation.requires_grad_(True)
    with torch.enable_grad():
        features = torch.cat([model.appearance(batch), model.motion.flatten(model.motion.gap(activation))], 1)
        scores = model.fusion(features)[0]
        i, j = MOTION_LABELS.index(first), MOTION_LABELS.index(second)
        (grads,) = torch.autograd.grad(scores[i] - scores[j], activation)
    raw = (grads[0].mean((1, 2, 3)).view(-1, 1, 1, 1) * activation[0]).sum(0).detach()
    from cnnwidgets.backend.clips import resize_map

    assert torch.allclose(evidence.difference, resize_map(raw, (16, 32, 32)), atol=1e-4)
    # the evidence lies on the object, not on the static background
    on_object = torch.from_numpy(clip.max(-1) > 175)
    strength = evidence.difference.abs()
    assert strength[on_object].mean() > 2 * strength[~on_object].mean()
    with pytest.raises(InputError, match="two different classes"):
        class_evidence(two_stream, clip, first, first)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))
