"""FeatureEvolution in a real JupyterLab: the epoch slider redraws filters and grid in the browser."""

from __future__ import annotations

from .conftest import CANVAS_PIXELS_JS, IGNORED_CONSOLE_ERRORS, open_notebook, run_cells

NOTEBOOK = "05_feature_evolution.ipynb"
WIDGET_CELLS = 4  # markdown, imports, markdown, `evolution = FeatureEvolution()`


def pixels(page, selector: str) -> dict:
    return page.locator(f".cnnw-feature-evolution {selector}").first.evaluate(CANVAS_PIXELS_JS)


def test_epoch_slider_redraws_filters_and_grid(jupyter_server, browser_page):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, WIDGET_CELLS)
    widget = page.locator(".cnnw-feature-evolution").first
    widget.locator("canvas.cnnw-fe-grid").wait_for(state="visible", timeout=60_000)
    label = widget.locator(".cnnw-fe-epoch")
    assert label.inner_text() == "epoch 30"  # starts on the last checkpoint
    grid, filters = pixels(page, "canvas.cnnw-fe-grid"), pixels(page, "canvas.cnnw-fe-filters")
    assert grid["colors"] > 20 and filters["colors"] > 5
    assert widget.locator("canvas.cnnw-fe-curve").count() >= 3
    widget.screenshot(path="test-artifacts/feature_evolution.png")

    slider = widget.locator("input.cnnw-fe-slider")
    slider.focus()
    page.keyboard.press("Home")
    page.wait_for_function("(el) => el.textContent === 'epoch 1'", arg=label.element_handle(), timeout=10_000)
    assert pixels(page, "canvas.cnnw-fe-filters")["hash"] != filters["hash"]
    assert pixels(page, "canvas.cnnw-fe-grid")["hash"] != grid["hash"]  # the highlighted column moved

    widget.locator("button.cnnw-fe-play").click()
    page.wait_for_function("(el) => el.textContent === 'epoch 2'", arg=label.element_handle(), timeout=10_000)
    widget.locator("button.cnnw-fe-play").click()
    assert not [e for e in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(e)]
