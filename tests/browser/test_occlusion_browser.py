"""OcclusionSlider in a real JupyterLab: the occlusion notebook renders the widget, and dragging the square with the
mouse changes the probability readout and the pixels; the heatmap fills in while the kernel keeps answering."""

from __future__ import annotations

import re

import pytest

from .conftest import CANVAS_PIXELS_JS, IGNORED_CONSOLE_ERRORS, open_notebook, run_cells

pytestmark = pytest.mark.browser

NOTEBOOK = "03_occlusion.ipynb"
WIDGET_CELLS = 4  # markdown, imports, markdown, `slider = OcclusionSlider(inspector, cat)`
RENDER_TIMEOUT_MS = 60_000
UPDATE_TIMEOUT_MS = 30_000


def readout(page) -> str:
    return page.locator(".cnnw-occlusion .cnnw-readout-text").inner_text()


def test_drag_the_occluder_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, WIDGET_CELLS)

    widget = page.locator(".cnnw-occlusion")
    canvas = widget.locator("canvas.cnnw-main")
    canvas.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_function(
        "() => /^P\\(.+\\) = [\\d.]+% under the square/.test(document.querySelector('.cnnw-occlusion .cnnw-readout-text')?.textContent ?? '')",
        timeout=RENDER_TIMEOUT_MS)
    first_text = readout(page)
    first_pixels = canvas.evaluate(CANVAS_PIXELS_JS)
    assert first_pixels["colors"] > 100  # the cat photo under the square
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(artifacts_dir / "occlusion_slider.png"))

    # drag the square from the centre to the top-left area with the mouse, in small steps
    box = canvas.bounding_box()
    start = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    end = (box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.25)
    page.mouse.move(*start)
    page.mouse.down()
    steps = 15
    for k in range(1, steps + 1):
        page.mouse.move(start[0] + (end[0] - start[0]) * k / steps, start[1] + (end[1] - start[1]) * k / steps)
        page.wait_for_timeout(20)
    page.mouse.up()

    # the readout answers the last position: the x slider and the readout both say where the square is now
    page.wait_for_function(
        "(before) => { const text = document.querySelector('.cnnw-occlusion .cnnw-readout-text')?.textContent ?? '';"
        " const readout = document.querySelector('.cnnw-occlusion .cnnw-readout');"
        " return text !== before && !readout.classList.contains('cnnw-pending'); }",
        arg=first_text, timeout=UPDATE_TIMEOUT_MS)
    assert re.match(r"P\(.+\) = [\d.]+% under the square \(unoccluded [\d.]+%\); top-1 there: .+ [\d.]+%", readout(page))
    x_value = float(widget.locator(".cnnw-controls input[type=range]").nth(2).input_value())
    assert 30 <= x_value <= 60, x_value  # 0.2 of the 224-pixel image
    moved_pixels = canvas.evaluate(CANVAS_PIXELS_JS)
    assert moved_pixels["hash"] != first_pixels["hash"]

    # the heatmap arrives while the kernel keeps answering: the which-class-wins panel gets drawn
    page.wait_for_function(
        "() => { const c = document.querySelector('.cnnw-occlusion canvas.cnnw-top-map'); return c && c.width > 0 && !c.closest('[hidden]'); }",
        timeout=RENDER_TIMEOUT_MS)

    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    widget.screenshot(path=str(artifacts_dir / "occlusion_slider_dragged.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)
