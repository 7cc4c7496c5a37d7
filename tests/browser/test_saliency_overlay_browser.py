"""SaliencyOverlay in a real JupyterLab: the overlay draws, and opacity, class and method redraw it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import IGNORED_CONSOLE_ERRORS, NOTEBOOKS, open_notebook, run_cells, wait_canvas

pytestmark = pytest.mark.browser

NOTEBOOK = "04_gradients_and_cams.ipynb"
WIDGET_CELLS = 4  # markdown, imports, markdown, `overlay = SaliencyOverlay(inspector, cat)`
RENDER_TIMEOUT_MS = 90_000
UPDATE_TIMEOUT_MS = 60_000

OVERLAY = ".cnnw-saliency-overlay canvas.cnnw-overlay"


@pytest.fixture(scope="session")
def notebooks_to_serve() -> list[Path]:
    return [NOTEBOOKS / NOTEBOOK]


def overlay_pixels(page) -> dict:
    return wait_canvas(page, OVERLAY, 100, timeout=RENDER_TIMEOUT_MS)


def wait_changed(page, before: dict) -> dict:
    return wait_canvas(page, OVERLAY, 100, not_hash=before["hash"], timeout=UPDATE_TIMEOUT_MS)


def test_saliency_overlay_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, WIDGET_CELLS)
    widget = page.locator(".cnnw-saliency-overlay")
    widget.locator("canvas.cnnw-overlay").first.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    assert widget.count() == 1

    first = overlay_pixels(page)  # the cat with its gradient map: many colours, not blank
    assert first["width"] == 224 and first["height"] == 224, first
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(artifacts_dir / "saliency_overlay.png"))

    # opacity: redrawn in the browser
    widget.locator("input.cnnw-opacity").evaluate("(el) => { el.value = '0.15'; el.dispatchEvent(new Event('input', { bubbles: true })); }")
    faint = wait_changed(page, first)

    # class: the second of the top 5, computed by the kernel
    class_select = widget.locator("select.cnnw-class")
    second = class_select.evaluate("(s) => s.options[1].value")
    class_select.select_option(second)
    other_class = wait_changed(page, faint)
    page.wait_for_function(
        "(n) => (document.querySelector('.cnnw-saliency-overlay .cnnw-caption')?.textContent ?? '').startsWith(`class ${n}:`)",
        arg=second, timeout=UPDATE_TIMEOUT_MS)

    # SmoothGrad with its own controls: fewer samples and more noise give another map
    assert not widget.locator(".cnnw-smooth-options").is_visible()
    widget.locator("select.cnnw-method").select_option("smoothgrad")
    smooth = wait_changed(page, other_class)
    assert widget.locator(".cnnw-smooth-options").is_visible() and not widget.locator(".cnnw-ig-options").is_visible()
    widget.locator("input.cnnw-samples").fill("4")
    widget.locator("input.cnnw-samples").dispatch_event("change")
    widget.locator("input.cnnw-noise").evaluate("(el) => { el.value = '0.4'; el.dispatchEvent(new Event('change', { bubbles: true })); }")
    noisier = wait_changed(page, smooth)

    # method: Grad-CAM
    widget.locator("select.cnnw-method").select_option("grad_cam")
    wait_changed(page, noisier)
    page.wait_for_function(
        "() => (document.querySelector('.cnnw-saliency-overlay .cnnw-caption')?.textContent ?? '').includes('CAMs at')",
        timeout=UPDATE_TIMEOUT_MS)
    assert widget.locator("select.cnnw-layer").is_visible()

    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    widget.screenshot(path=str(artifacts_dir / "saliency_overlay_final.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)
