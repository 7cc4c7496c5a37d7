"""LayerExplorer, SaliencyOverlay and ConfusionView on a video model (the zoo's two-stream network): time steps of the
maps and the frames they cover, the `frame` trait and its refusals, space-time maps equal to `methods.video`'s,
requests echoed, bad input in one line, the model left as it came."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import ConfusionView, InputError, Inspector, LayerExplorer, SaliencyOverlay, methods, zoo
from cnnwidgets.backend.clips import ClipPreprocess
from cnnwidgets.methods.reduce import normalize_map, to_uint8
from cnnwidgets.methods.temporal import evidence_display, frame_spans
from cnnwidgets.widgets import jobs
from tests.conftest import assert_same_state, hooks_left, model_state
from tests.widgets.test_refused_values import browser_update

pytestmark = pytest.mark.usefixtures("one_thread")

CLOCKWISE_SEEN_AS_ANTICLOCKWISE = 4
"""Test clip 4 is "rotate clockwise"; the two-stream net calls it "rotate anticlockwise" (0.56 against 0.29)."""


@pytest.fixture(scope="module")
def two_stream():
    return zoo.motion_cnn("two_stream")


@pytest.fixture(scope="module")
def clip():
    return zoo.motion_clips("test")[CLOCKWISE_SEEN_AS_ANTICLOCKWISE][0]


@pytest.fixture(scope="module")
def explorer(two_stream, clip):
    return LayerExplorer(two_stream, clip)


def test_layer_maps_carry_every_time_step_on_one_scale(explorer, two_stream, clip):
    explorer.layer = "motion.conv2.1"
    activations = two_stream.activations(clip, "motion.conv2.1")  # [16, 15, 16, 16]: one step fewer than the clip
    assert explorer.maps["shape"] == [16, 15, 16, 16] and explorer.image["shape"] == [16, 32, 32, 3]
    expected = (activations - activations.min()) / (activations.max() - activations.min()) * 255
    np.testing.assert_allclose(explorer.maps.array, expected.round().numpy(), atol=1)
    assert len(explorer.maps["data"]) == 16 * 15 * 16 * 16  # all steps in one message: 61 KB
    stats = explorer.maps["stats"]
    np.testing.assert_allclose(stats["max"], activations.flatten(1).amax(1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("layer, spans", [
    ("appearance.conv3.1", [[t, t] for t in range(16)]),  # 1×3×3 convolutions: each step sees its own frame
    ("motion.conv1.1", [[max(t - 1, 0), min(t + 2, 15)] for t in range(15)]),  # differences t-1..t+1: frames t-1..t+2
    ("motion.conv3.1", [[max(t - 3, 0), min(t + 4, 15)] for t in range(15)]),  # three 3×3×3 convs on differences
    ("appearance.gap", [[0, 15]]),
])
def test_each_time_step_names_the_input_frames_it_covers(explorer, layer, spans):
    explorer.layer = layer
    assert explorer.maps["spans"] == spans


def test_frame_spans_of_a_strided_hand_built_network():
    """Conv3d with a 3-frame kernel (padding 1) then a 2-frame kernel at temporal stride 2: step t of the second
    covers the first's steps 2t..2t+1, so frames 2t-1..2t+2 (clipped to the 8 frames)."""
    model = nn.Sequential(nn.Conv3d(1, 2, (3, 1, 1), padding=(1, 0, 0)), nn.Conv3d(2, 2, (2, 1, 1), stride=(2, 1, 1)))
    inspector = Inspector(model, ClipPreprocess(resize=None, crop=None, mean=(0.0,), std=(1.0,)))
    batch = torch.randn(1, 1, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    assert frame_spans(inspector, batch, "1") == [[0, 2], [1, 4], [3, 6], [5, 7]]
    assert frame_spans(inspector, batch, "0") == [[max(t - 1, 0), min(t + 1, 7)] for t in range(8)]
    assert hooks_left(model) == 0


class FixedSize(nn.Module):
    """Takes 40-px frames only (like a model with a fixed input size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == 40, "this model takes 40 px frames"
        return x


@pytest.mark.parametrize("fixed", [False, True], ids=["cropped", "fixed size: probed at full size"])
def test_frame_spans_on_large_frames_are_measured_on_a_crop_or_at_full_size(fixed):
    layers = [nn.Conv3d(1, 2, (3, 1, 1), padding=(1, 0, 0)), nn.ReLU(), nn.Conv3d(2, 2, (3, 3, 3), padding=1)]
    model = nn.Sequential(*([FixedSize()] if fixed else []), *layers)
    inspector = Inspector(model, ClipPreprocess(resize=None, crop=None, mean=(0.0,), std=(1.0,)))
    batch = inspector.preprocess(torch.randn(1, 1, 6, 40, 40, generator=torch.Generator().manual_seed(0)))
    last = str(len(model) - 1)
    assert frame_spans(inspector, batch, last) == [[max(t - 2, 0), min(t + 2, 5)] for t in range(6)]


def test_frame_follows_the_layers_time_steps_and_needs_no_round_trip(explorer, monkeypatch):
    explorer.layer = "appearance.conv2.1"
    explorer.frame = 15
    explorer.layer = "motion.conv2.1"  # 15 steps: the frame moves to the last one
    assert explorer.frame == 14
    maps = explorer.maps
    explorer.frame = 3
    assert explorer.maps is maps  # every step is in the browser already
    explorer.layer = "appearance.gap"
    assert explorer.frame == 0


@pytest.mark.parametrize("value", [15, -1, 99])
def test_a_frame_out_of_range_is_refused_from_the_browser(explorer, value):
    explorer.layer, explorer.frame = "motion.conv1.1", 2
    explorer.error = ""
    maps = explorer.maps
    sent = browser_update(explorer, frame=value)
    assert explorer.frame == 2 and explorer.maps is maps
    assert explorer.error == f"frame {value} is out of range; layer 'motion.conv1.1' has time steps 0..14"
    assert any(message.get("state", {}).get("frame") == 2 for message in sent)  # the slider goes back


def test_a_frame_on_an_image_model_is_refused(lite0, cat):
    widget = LayerExplorer(lite0, cat)
    with pytest.raises(InputError, match=r"has one time step \(frame 0\)"):
        widget.frame = 1
    assert widget.frame == 0 and widget.maps["spans"] is None


def test_answers_echo_the_request_of_the_browser(explorer):
    browser_update(explorer, layer="motion.conv2", request=41)
    assert (explorer.maps["layer"], explorer.maps["request"]) == ("motion.conv2", 41)
    explorer.layer = "motion.conv1"  # from Python: answered with the current id
    assert explorer.maps["request"] == 41


def test_conv3d_filters_show_their_time_slices_side_by_side(explorer, two_stream):
    explorer.layer = "appearance.conv1.1"
    assert explorer.filters["shape"] == [8, 3, 3, 3] and "one time slice (no motion)" in explorer.filters["note"]
    explorer.layer = "motion.conv2.1"
    assert explorer.filters["shape"] == [16, 3, 9, 1] and "3 time slices side by side" in explorer.filters["note"]
    weight = two_stream.model.motion.conv2[0].weight.detach().mean(1)  # [16, 3 (t), 3, 3]
    first = explorer.filters.array[0, :, :, 0]  # [3, 9]: slices t=0, 1, 2 left to right
    bound = weight[0].abs().max()
    expected = ((weight[0].permute(1, 0, 2).reshape(3, 9) + bound) / (2 * bound) * 255).round()
    np.testing.assert_array_equal(first, expected.numpy())


@pytest.fixture(scope="module")
def overlay(two_stream, clip):
    return SaliencyOverlay(two_stream, clip)


def test_overlay_offers_the_space_time_methods_only(overlay):
    assert [m["name"] for m in overlay.methods] == ["saliency", "grad_cam"] and overlay.compare == ["saliency", "grad_cam"]
    assert "Score-CAM" in overlay.methods_note and "left out" in overlay.methods_note
    overlay.error = ""
    browser_update(overlay, method="score_cam")
    assert overlay.method == "saliency"
    assert overlay.error == "Score-CAM is 2-D only and not defined for this video model; pick one of saliency, grad_cam"


def test_overlay_maps_are_the_space_time_methods(overlay, two_stream, clip):
    overlay.set_class("rotate clockwise")
    overlay.side_by_side, overlay.layer = True, "motion.conv3"
    maps = overlay.maps.array
    assert maps.shape == (2, 16, 32, 32) and overlay.maps["methods"] == ["saliency", "grad_cam"]
    gradient = methods.clip_saliency(two_stream, clip, "rotate clockwise")
    cam = methods.grad_cam_3d(two_stream, clip, "rotate clockwise", layer="motion.conv3")
    np.testing.assert_array_equal(maps[0], to_uint8(normalize_map(gradient)).numpy())
    np.testing.assert_array_equal(maps[1], to_uint8(normalize_map(cam)).numpy())
    browser_update(overlay, layer="appearance.conv3", request=7)
    cam = methods.grad_cam_3d(two_stream, clip, "rotate clockwise", layer="appearance.conv3")
    assert overlay.maps["request"] == 7
    np.testing.assert_array_equal(overlay.maps.array[1], to_uint8(normalize_map(cam)).numpy())


def test_the_sanity_check_compares_whole_space_time_volumes(overlay, two_stream, clip):
    overlay.side_by_side, overlay.method, overlay.layer = False, "grad_cam", "motion.conv3"
    result = overlay.run_sanity_check(steps=2)
    assert result.steps == ["fusion", "motion.conv3.0"] and result.correlations["grad_cam"][0] == 1.0
    trained = result.maps["grad_cam"][0]
    assert trained.shape == (16 * 32, 32)  # the [T,H,W] volume as one map: every voxel is ranked
    expected = normalize_map(methods.grad_cam_3d(two_stream, clip, overlay.target, layer="motion.conv3"))
    torch.testing.assert_close(trained, expected.reshape(16 * 32, 32))
    assert overlay.sanity["shape"] == [1, 3, 56, 56] and overlay.sanity["titles"] == ["Grad-CAM"]


def test_overlay_frame_is_checked_against_the_clip(overlay, tmp_path):
    overlay.frame = 15
    overlay.error = ""
    browser_update(overlay, frame=16)
    assert overlay.frame == 15 and overlay.error == "frame 16 is out of range; the clip has time steps 0..15"
    assert overlay.to_png(tmp_path / "overlay.png")[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def confusion(two_stream, clip):
    return ConfusionView(two_stream, clip)


def test_confusion_defaults_to_the_top_two_and_shows_class_evidence(confusion, two_stream, clip):
    assert (confusion.first, confusion.second) == (5, 4)  # anticlockwise (wrong) first, clockwise (true) second
    found = methods.class_evidence(two_stream, clip, 5, 4, layer="motion.conv3")
    pictures, scale, bound = evidence_display(found.first_map, found.second_map, found.difference)
    np.testing.assert_array_equal(confusion.evidence.array, pictures.numpy())
    message = confusion.evidence
    assert message["names"] == ["rotate anticlockwise", "rotate clockwise"] and message["layer"] == "motion.conv3"
    probabilities = two_stream.logits(clip).softmax(-1)
    np.testing.assert_allclose(message["probabilities"], [float(probabilities[5]), float(probabilities[4])], rtol=1e-6)
    np.testing.assert_allclose(message["scores"], found.scores, rtol=1e-6)
    np.testing.assert_allclose(message["totals"][2], found.difference.mean((1, 2)).numpy(), rtol=1e-5, atol=1e-9)
    assert (scale, bound) == pytest.approx((float(torch.stack([found.first_map, found.second_map]).abs().max()),
                                            float(found.difference.abs().max())))


def test_the_motion_stream_speaks_for_the_true_class_and_appearance_for_the_wrong_one(confusion):
    """The confusion comes from the appearance stream, which sees no motion (notebook 08's point)."""
    confusion.layer = "motion.conv3"
    assert sum(confusion.evidence["totals"][2]) < 0  # for clockwise (second, the true class)
    confusion.layer = "appearance.conv3"
    assert sum(confusion.evidence["totals"][2]) > 0  # for anticlockwise (first, the prediction)


def test_evidence_display_by_hand():
    first, second = torch.tensor([[[2.0, -1.0]]]), torch.tensor([[[-4.0, 1.0]]])
    pictures, scale, bound = evidence_display(first, second, first - second)
    assert (scale, bound) == (4.0, 6.0)
    # 128 + 127·v/4 for the classes (one scale), 128 + 127·v/6 for the difference [6, -2]
    assert pictures.tolist() == [[[[192, 96]]], [[[1, 160]]], [[[255, 86]]]]


def test_confusion_classes_are_checked(confusion):
    confusion.error = ""
    before = confusion.evidence
    browser_update(confusion, second=confusion.first)
    assert confusion.second == 4 and confusion.evidence is before
    assert confusion.error == "first and second are both 'rotate anticlockwise'; pick two different classes"
    browser_update(confusion, first=4, second=5, request=3)  # a swap in one message is fine
    assert (confusion.first, confusion.second, confusion.evidence["request"]) == (4, 5, 3)
    assert confusion.evidence["names"] == ["rotate clockwise", "rotate anticlockwise"]
    browser_update(confusion, frame=16)
    assert confusion.frame == 0 and "time steps 0..15" in confusion.error
    with pytest.raises(InputError, match="no class named"):
        confusion.set_classes("rotate sideways", "left")


def test_confusion_takes_names_and_exports(two_stream, clip, tmp_path):
    widget = ConfusionView(two_stream, clip, "grow", "shrink", layer="appearance.conv3", frame=5)
    assert (widget.first, widget.second, widget.layer, widget.frame) == (6, 7, "appearance.conv3", 5)
    assert widget.to_png(tmp_path / "confusion.png")[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="pick two different classes"):
        ConfusionView(two_stream, clip, "grow", 6)


@pytest.mark.parametrize("make", [LayerExplorer, SaliencyOverlay, ConfusionView])
def test_an_image_to_a_video_model_is_one_line(two_stream, cat, make):
    with pytest.raises(InputError) as raised:
        make(two_stream, cat)
    message = str(raised.value)
    assert "\n" not in message and "pass a clip" in message


@pytest.mark.parametrize("make", [LayerExplorer, SaliencyOverlay])
def test_a_clip_to_an_image_model_is_one_line(lite0, clip, make):
    with pytest.raises(InputError) as raised:
        make(lite0, clip)
    assert "\n" not in str(raised.value) and "pass one frame (e.g. clip[0])" in str(raised.value)
    with pytest.raises(InputError, match="needs a video model"):
        ConfusionView(lite0, clip)


def test_set_image_with_a_picture_keeps_the_clip_and_a_shorter_clip_moves_the_frame(two_stream, clip, cat):
    widget = LayerExplorer(two_stream, clip, layer="motion.conv1.1", frame=14)
    with pytest.raises(InputError):
        widget.set_image(cat)
    assert widget.image["shape"] == [16, 32, 32, 3] and "pass a clip" in widget.error
    short = zoo.motion_cnn("two_stream")  # a model taking clips of any length: the transform fixes none
    short.transform = ClipPreprocess(resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    widget = LayerExplorer(short, clip, layer="motion.conv1.1", frame=14)
    widget.set_image(clip[:8])
    assert widget.frame == 6 and widget.maps["shape"][1] == 7 and widget.maps["spans"][6] == [5, 7]


def test_the_model_leaves_as_it_came(clip):
    inspector = zoo.motion_cnn("c3d")
    model = inspector.model.train()  # a training-mode model stays in training mode
    before = model_state(model)
    widget = LayerExplorer(inspector, clip, layer="features.conv2.1")
    widget.frame = 7
    overlay = SaliencyOverlay(inspector, clip, side_by_side=True)
    overlay.frame = 3
    ConfusionView(inspector, clip).set_classes("left", "right")
    assert widget.maps["spans"][7] == [5, 9]  # two 3×3×3 convs: frames t-2..t+2
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


def on_the_event_loop(build, change):
    """Build a widget inside a running event loop (as in a notebook), let its first job start, apply `change` (a
    newer pick), and run the loop until no job is left; (widget, shown before the first job ended, progress seen)."""

    async def run():
        widget = build()
        pending = widget.busy
        seen: list[float] = []
        widget.observe(lambda event: seen.append(event["new"]), "progress")
        await asyncio.sleep(0)  # the first job's first step
        change(widget)
        while widget._jobs.running:
            await asyncio.sleep(0.001)
        return widget, pending, seen

    return asyncio.run(run())


def test_confusion_evidence_follows_in_steps_on_the_event_loop_and_the_newest_pick_wins(two_stream, clip, monkeypatch):
    monkeypatch.setattr(jobs, "CHUNK_S", 1e-4)  # one step per chunk of the loop
    widget, pending, seen = on_the_event_loop(lambda: ConfusionView(two_stream, clip),
                                              lambda view: setattr(view, "layer", "appearance.conv3"))
    assert pending and seen[-3:] == pytest.approx([1 / 3, 2 / 3, 1.0])  # the forward, then one backward per class
    found = methods.class_evidence(two_stream, clip, widget.first, widget.second, layer="appearance.conv3")
    np.testing.assert_array_equal(widget.evidence.array, evidence_display(found.first_map, found.second_map, found.difference)[0].numpy())
    assert widget.evidence["layer"] == "appearance.conv3" and not widget.busy and widget.error == ""


def test_overlay_maps_follow_one_method_per_step_on_the_event_loop(two_stream, clip, monkeypatch):
    monkeypatch.setattr(jobs, "CHUNK_S", 1e-4)
    widget, pending, seen = on_the_event_loop(lambda: SaliencyOverlay(two_stream, clip, side_by_side=True),
                                              lambda view: setattr(view, "layer", "appearance.conv3"))
    assert pending and seen[-3:] == pytest.approx([0.5, 0.75, 1.0])  # the gradient (kept), then Grad-CAM: forward, backward
    cam = methods.grad_cam_3d(two_stream, clip, widget.target, layer="appearance.conv3")
    np.testing.assert_array_equal(widget.maps.array[1], to_uint8(normalize_map(cam)).numpy())
    assert widget.maps["layer"] == "appearance.conv3" and not widget.busy


def test_frame_spans_of_torchvision_r3d_18_through_layer_explorer():
    """r3d_18 (random weights), 8 frames of 32 px: the stem's 3-frame convolution sees t-1..t+1; layer1 adds four
    more 3-frame convolutions (t-5..t+5); layer2's first convolution has temporal stride 2, so its step v reads
    layer1's steps 2v-1..2v+1 (frames 2v-6..2v+6). Clipped to frames 0..7; the model leaves as it came."""
    from torchvision.models.video import r3d_18

    model = r3d_18(weights=None).train()
    before = model_state(model)
    inspector = Inspector(model, ClipPreprocess(resize=None, crop=None))
    clip = torch.randn(3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    widget = LayerExplorer(inspector, clip, layer="stem.2")
    assert widget.maps["spans"] == [[max(t - 1, 0), min(t + 1, 7)] for t in range(8)]
    widget.layer = "layer1"
    assert widget.maps["spans"] == [[max(t - 5, 0), min(t + 5, 7)] for t in range(8)]
    widget.layer = "layer2.0.conv1.0"
    assert widget.maps["spans"] == [[max(2 * v - 6, 0), min(2 * v + 6, 7)] for v in range(4)]
    assert widget.maps["shape"] == [128, 4, 8, 8]
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))
