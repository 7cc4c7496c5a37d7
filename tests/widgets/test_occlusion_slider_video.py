"""OcclusionSlider on clips (a gray tube of patch × frames): the full map equals a brute-force loop over tubes on a
tiny 3-D CNN, the readout under the dragged tube matches it, bad clips and settings are one-line errors; and the
channel panel reads channels-last and token layers of image models through their layout."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from cnnwidgets import InputError, Inspector
from cnnwidgets.methods.occlusion import grid_boxes
from cnnwidgets.widgets import jobs
from cnnwidgets.widgets.occlusion_slider import OcclusionSlider
from tests.backend.test_index_clips import clip_inspector, tiny_c3d
from tests.conftest import hooks_left

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTH, SIDE, PATCH, FRAMES = 6, 16, 4, 2


@pytest.fixture(scope="module")
def inspector():
    return clip_inspector(tiny_c3d())


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randint(0, 4, (3, LENGTH, SIDE, SIDE), generator=torch.Generator().manual_seed(7)).float()


@pytest.fixture(scope="module")
def slider(inspector, clip):
    return OcclusionSlider(inspector, clip, patch=PATCH, stride=PATCH, frames=FRAMES)


def brute_force_drops(inspector, clip, target: int) -> np.ndarray:
    """[first frame, row, col] score drop of every tube, one forward per tube."""
    with torch.inference_mode():
        clean = float(inspector.model(clip[None])[0, target])
        starts = range(0, SIDE - PATCH + 1, PATCH)
        drops = np.zeros((LENGTH - FRAMES + 1, len(starts), len(starts)), np.float32)
        for t in range(LENGTH - FRAMES + 1):
            for i, y in enumerate(starts):
                for j, x in enumerate(starts):
                    occluded = clip.clone()
                    occluded[:, t:t + FRAMES, y:y + PATCH, x:x + PATCH] = 0
                    drops[t, i, j] = clean - float(inspector.model(occluded[None])[0, target])
    return drops


def heatmap_of(widget) -> np.ndarray:
    return np.frombuffer(widget.heatmap["data"], np.float32).reshape(widget.heatmap["shape"])


def test_the_tube_map_equals_a_brute_force_loop_frame_by_frame(slider, inspector, clip):
    assert slider.length == LENGTH and slider.frame == LENGTH // 2 and slider.layers == []
    expected = brute_force_drops(inspector, clip, slider.target)
    for frame in range(LENGTH):
        slider.frame = frame
        first = min(max(frame - FRAMES // 2, 0), LENGTH - FRAMES)
        assert slider.heatmap["frames"] == [first, first + FRAMES] and slider.heatmap["kind"] == "drop"
        np.testing.assert_allclose(heatmap_of(slider), expected[first], rtol=1e-5, atol=1e-4)
        assert slider.image["shape"] == [SIDE, SIDE, 3]
    assert hooks_left(inspector.model) == 0


def test_the_readout_under_the_dragged_tube_is_its_cell_of_the_map(slider, inspector, clip):
    slider.frame = 4
    expected = brute_force_drops(inspector, clip, slider.target)
    slider.set_state({"x": 2 * PATCH + PATCH / 2, "y": PATCH / 2, "request": slider.request + 1})
    readout = slider.readout
    assert readout["request"] == slider.request and readout["frames"] == [3, 5] and readout["box"] == [0, 8, 4, 12]
    assert readout["drop"] == pytest.approx(float(expected[3, 0, 2]), rel=1e-5, abs=1e-4)
    with torch.inference_mode():
        occluded = clip.clone()
        occluded[:, 3:5, 0:4, 8:12] = 0
        probability = inspector.model(occluded[None])[0].softmax(-1)[slider.target]
    assert readout["probability"] == pytest.approx(float(probability), abs=1e-5)


def test_bad_settings_are_refused_in_one_line(slider):
    for name, value, message in [("frame", LENGTH, "frame=6 does not fit the clip"), ("frames", 0, "frames=0 does not fit"),
                                 ("fill", "blur", "fill='gray'"), ("layer", "1", "feature-map panel is for image models")]:
        before = getattr(slider, name)
        with pytest.raises(InputError, match=message):
            setattr(slider, name, value)
        assert getattr(slider, name) == before and "\n" not in slider.error


def test_a_clip_of_the_wrong_length_size_or_channels_is_one_input_error():
    from cnnwidgets import zoo

    inspector = zoo.motion_cnn("c3d")
    clip, _ = zoo.motion_clips()[0]
    for bad, message in [(clip[:8], "the clip has 8 frames; this model takes 16"),
                         (clip[..., :2], "channels"),
                         (torch.rand(3, 16, 24, 24), "frames are 24×24; this model takes 32×32"),
                         (clip[0], "got a single image")]:
        with pytest.raises(InputError, match=message) as caught:
            OcclusionSlider(inspector, bad)
        assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="needs a clip"):
        OcclusionSlider(inspector)
    with pytest.raises(InputError, match="frames=17 does not fit the clip; pass 1..16"):
        OcclusionSlider(inspector, clip, frames=17)


def test_a_stride_that_does_not_divide_the_frame_keeps_the_regular_grid(inspector, clip):
    widget = OcclusionSlider(inspector, clip, patch=PATCH, stride=5, frames=FRAMES)  # tubes at 0, 5, 10 (and 12)
    first = widget.tube_frames()[0]
    assert widget.heatmap["shape"] == [3, 3] and widget._tubes.starts[1] == [0, 5, 10, 12]
    np.testing.assert_array_equal(heatmap_of(widget), widget._tubes.drops[first, :3, :3].numpy())


def test_to_png_shows_the_frame_and_the_tube(slider, tmp_path):
    png = slider.to_png(tmp_path / "tube.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------- layouts (issue 12)


@pytest.mark.parametrize("name, layer", [("convnext_atto", "stages.1.blocks.0.mlp.act"), ("vit_tiny_patch16_224", "blocks.0")])
def test_the_channel_panel_reads_channels_last_and_token_layers_through_the_layout(name, layer):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "patch_size": 8} if name.startswith("vit") else {"conv_mlp": False}
    inspector = Inspector(timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval())
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(4))
    widget = OcclusionSlider(inspector, image, patch=16, stride=8, layer=layer, channel=3)
    widget.finish()
    feature = np.frombuffer(widget.feature_map["data"], np.float32).reshape(widget.feature_map["shape"])
    expected = []
    for y0, x0, y1, x1 in grid_boxes((32, 32), 16, 8):
        occluded = image.clone()
        occluded[:, y0:y1, x0:x1] = 0
        expected.append(float(inspector.activations(occluded, layer)[3].sum()))  # [C,H,W] through the layout
    np.testing.assert_allclose(feature.ravel(), expected, rtol=1e-4, atol=1e-4)


def test_the_tube_map_runs_in_batches_on_the_event_loop_and_a_newer_setting_cancels_it(inspector, clip, monkeypatch):
    monkeypatch.setattr(jobs, "CHUNK_S", 1e-4)  # about one batch of tubes per chunk of the loop

    async def run() -> tuple[OcclusionSlider, bool, int, list[float]]:
        widget = OcclusionSlider(inspector, clip, patch=PATCH, stride=PATCH, frames=FRAMES)
        pending = widget.busy and not widget.heatmap  # the constructor returned before the map was computed
        seen: list[float] = []
        widget.observe(lambda change: seen.append(change["new"]), "progress")
        for _ in range(3):
            await asyncio.sleep(0)  # a few chunks of the first target's map
        first_target = widget.target
        widget.target = (first_target + 1) % len(widget.labels)  # a newer setting: the old map is cancelled
        while widget._jobs.running:
            await asyncio.sleep(0.001)
        return widget, pending, first_target, seen

    widget, pending, first_target, seen = asyncio.run(run())
    assert pending and not widget.busy and widget.target != first_target
    restart = len(seen) - seen[::-1].index(0.0)  # after the newer setting's restart
    assert any(0 < value < 1 for value in seen[:restart - 1])  # the first map was under way, then cancelled
    assert seen[restart:] == pytest.approx(np.arange(1, 21) / 20)  # one step per batch of 4 of the 80 tubes
    first = min(max(widget.frame - FRAMES // 2, 0), LENGTH - FRAMES)
    expected = brute_force_drops(inspector, clip, widget.target)  # the newer target's map, exact
    np.testing.assert_allclose(heatmap_of(widget), expected[first], rtol=1e-5, atol=1e-4)
    assert widget.heatmap["target"] == widget.target and hooks_left(inspector.model) == 0
