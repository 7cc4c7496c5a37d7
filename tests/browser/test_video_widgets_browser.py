"""Notebook 08's video widgets in a real JupyterLab: moving the frame slider (and playing) redraws LayerExplorer,
SaliencyOverlay and ConfusionView in the browser, and a layer pick is answered by the kernel."""

from __future__ import annotations

import pytest

from .conftest import IGNORED_CONSOLE_ERRORS, canvas_pixels, open_notebook, run_cells, wait_canvas

pytestmark = pytest.mark.browser

NOTEBOOK = "08_video_action_recognition.ipynb"
WIDGET_CELLS = 14  # up to `confusion = cnnwidgets.ConfusionView(inspector, clip)`: two LayerExplorers, SaliencyOverlay, ConfusionView
RENDER_TIMEOUT_MS = 90_000
UPDATE_TIMEOUT_MS = 30_000

MOVE_SLIDER_JS = "(el, value) => { el.value = String(value); el.dispatchEvent(new Event('input', { bubbles: true })); }"


def wait_pixels(page, selector: str, index: int = 0, *, min_colors: int = 8, not_hash: int | None = None,
                timeout: int = UPDATE_TIMEOUT_MS) -> dict:
    return wait_canvas(page, selector, min_colors, not_hash, timeout, index)


def move_frame(widget, value: int) -> None:
    widget.locator("input.cnnw-frame").evaluate(MOVE_SLIDER_JS, value)


def test_frame_sliders_redraw_the_video_widgets(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, WIDGET_CELLS)
    page.locator(".cnnw-confusion-view canvas.cnnw-evidence-difference").wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)

    # LayerExplorer on the motion stream (the second explorer): 15 time steps, each covering frames t-2..t+3
    explorer = page.locator(".cnnw-layer-explorer").nth(1)
    grid = ".cnnw-layer-explorer canvas.cnnw-grid"
    before = wait_pixels(page, grid, 1, timeout=RENDER_TIMEOUT_MS)
    readout = explorer.locator(".cnnw-frame-readout")
    assert readout.inner_text() == "time step 0 of 15 · input frames 0–3", readout.inner_text()
    strip_before = canvas_pixels(explorer.locator("canvas.cnnw-strip"))
    move_frame(explorer, 7)
    after = wait_pixels(page, grid, 1, not_hash=before["hash"])
    assert readout.inner_text() == "time step 7 of 15 · input frames 5–10", readout.inner_text()
    assert canvas_pixels(explorer.locator("canvas.cnnw-strip"))["hash"] != strip_before["hash"]  # the outline moved
    explorer.scroll_into_view_if_needed()
    explorer.screenshot(path=str(artifacts_dir / "video_layer_explorer.png"))

    # play advances the time step by itself; pause stops it
    play = explorer.locator("button.cnnw-play")
    play.click()
    page.wait_for_function(
        "() => !/^time step 7 /.test(document.querySelectorAll('.cnnw-layer-explorer .cnnw-frame-readout')[1].textContent)",
        timeout=UPDATE_TIMEOUT_MS)
    play.click()
    assert "play" in play.inner_text()

    # a layer pick goes to the kernel and comes back with that layer's own time steps
    explorer.locator("select.cnnw-layer").select_option("motion.conv1.1")
    page.wait_for_function(
        "() => /input frames/.test(document.querySelectorAll('.cnnw-layer-explorer .cnnw-frame-readout')[1].textContent)"
        " && document.querySelectorAll('.cnnw-layer-explorer .cnnw-grid')[1].width > 0"
        " && document.querySelectorAll('.cnnw-layer-explorer select.cnnw-layer')[1].value === 'motion.conv1.1'"
        " && document.querySelectorAll('.cnnw-layer-explorer .cnnw-note')[1].hidden",
        timeout=UPDATE_TIMEOUT_MS)
    wait_pixels(page, grid, 1, not_hash=after["hash"])

    # SaliencyOverlay: gradient and Grad-CAM side by side, blended over the chosen frame
    overlay = page.locator(".cnnw-saliency-overlay")
    cam = ".cnnw-saliency-overlay canvas.cnnw-overlay[data-method=grad_cam]"
    cam_before = wait_pixels(page, cam, timeout=RENDER_TIMEOUT_MS)
    assert "2-D only and left out" in overlay.locator(".cnnw-methods-note").inner_text()
    move_frame(overlay, 12)
    wait_pixels(page, cam, not_hash=cam_before["hash"])
    assert overlay.locator(".cnnw-frame-readout").inner_text() == "frame 12 of 16"
    overlay.scroll_into_view_if_needed()
    overlay.screenshot(path=str(artifacts_dir / "video_saliency_overlay.png"))

    # ConfusionView: the difference map follows the frame
    confusion = page.locator(".cnnw-confusion-view")
    difference = ".cnnw-confusion-view canvas.cnnw-evidence-difference"
    difference_before = wait_pixels(page, difference, timeout=RENDER_TIMEOUT_MS)
    assert "rotate anticlockwise" in confusion.locator(".cnnw-two").inner_text()
    move_frame(confusion, 9)
    wait_pixels(page, difference, not_hash=difference_before["hash"])
    confusion.scroll_into_view_if_needed()
    confusion.screenshot(path=str(artifacts_dir / "video_confusion_view.png"))

    for widget in (explorer, overlay, confusion):
        assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    (artifacts_dir / "video_widgets_console_errors.txt").write_text("\n".join(page.console_errors) + "\n")
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)
