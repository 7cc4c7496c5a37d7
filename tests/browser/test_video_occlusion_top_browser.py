"""Video in a real JupyterLab: OcclusionSlider on a clip — dragging the tube changes the pixels and the readout, the
frame slider shows another frame and moves the tube; TopActivations draws its top clips as filmstrips."""

from __future__ import annotations

import re

import pytest

from .conftest import console_errors, show_widget, wait_canvas

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000

SOURCE = """import torch
from cnnwidgets import zoo
from cnnwidgets.widgets import OcclusionSlider, TopActivations
inspector = zoo.motion_cnn("two_stream")
clips = zoo.motion_clips("test")
slider = OcclusionSlider(inspector, clips[0][0], patch=8, stride=8, frames=4)
index = inspector.index(torch.utils.data.Subset(clips, range(16)), layers=["motion.conv3.1"], k=4, progress=False)
display(slider, TopActivations(index, "motion.conv3.1", 5))"""

READOUT = ".cnnw-occlusion .cnnw-readout-text"


def readout(page) -> str:
    return page.locator(READOUT).inner_text()


def wait_readout_change(page, before: str) -> str:
    page.wait_for_function(
        "([selector, before]) => { const text = document.querySelector(selector)?.textContent ?? '';"
        " return text !== before && !document.querySelector('.cnnw-occlusion .cnnw-readout').classList.contains('cnnw-pending'); }",
        arg=[READOUT, before], timeout=TIMEOUT_MS)
    return readout(page)


def test_tube_occlusion_and_filmstrips_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget = show_widget(page, jupyter_server, "video_widgets.ipynb", SOURCE, ".cnnw-occlusion", TIMEOUT_MS)
    page.wait_for_function("(s) => /under the tube \\(frames 6–9\\)/.test(document.querySelector(s)?.textContent ?? '')",
                           arg=READOUT, timeout=TIMEOUT_MS)
    first = wait_canvas(page, ".cnnw-occlusion canvas.cnnw-main", min_colors=50)
    first_text = readout(page)

    # drag the tube from the centre towards the top left: new pixels, and the readout of the new position
    canvas = widget.locator("canvas.cnnw-main")
    box = canvas.bounding_box()
    start = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    end = (box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.3)
    page.mouse.move(*start)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(start[0] + (end[0] - start[0]) * k / 10, start[1] + (end[1] - start[1]) * k / 10)
        page.wait_for_timeout(20)
    page.mouse.up()
    dragged_text = wait_readout_change(page, first_text)
    assert re.match(r"P\(.+\) = [\d.]+% under the tube \(frames 6–9\) \(unoccluded [\d.]+%, score drop -?[\d.e+-]+\); top-1 there: ", dragged_text)
    dragged = wait_canvas(page, ".cnnw-occlusion canvas.cnnw-main", min_colors=50, not_hash=first["hash"])

    # another frame: other pixels, and the tube moves with it
    frame = widget.locator(".cnnw-controls input[type=range]").first
    frame.evaluate("(input) => { input.value = '2'; input.dispatchEvent(new Event('input', { bubbles: true })); }")
    assert "frames 0–3" in wait_readout_change(page, dragged_text)
    wait_canvas(page, ".cnnw-occlusion canvas.cnnw-main", min_colors=50, not_hash=dragged["hash"])
    assert "frame" in widget.locator(".cnnw-controls").inner_text() and "2 / 15" in widget.locator(".cnnw-controls").inner_text()
    widget.screenshot(path=str(artifacts_dir / "occlusion_slider_video.png"))

    # TopActivations: four filmstrips, each wider than tall (8 frames side by side)
    top = page.locator(".cnnw-top-activations")
    top.wait_for(state="visible", timeout=TIMEOUT_MS)
    strip = wait_canvas(page, ".cnnw-top-activations canvas.cnnw-crop", min_colors=20)
    assert strip["width"] > 4 * strip["height"], strip
    assert top.locator("canvas.cnnw-crop").count() == 4
    assert "top 4 clips" in top.locator(".cnnw-field").inner_text()
    top.screenshot(path=str(artifacts_dir / "top_activations_video.png"))
    assert not widget.locator(".cnnw-error").is_visible() and not top.locator(".cnnw-error").is_visible()
    assert not console_errors(page), console_errors(page)
