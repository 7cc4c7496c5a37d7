"""CorrespondenceExplorer in a real JupyterLab: images, similarity and curve draw; a click in image a moves the
match in image b (a new similarity map)."""

from __future__ import annotations

import pytest

from .conftest import (
    CANVAS_PIXELS_JS,
    IGNORED_CONSOLE_ERRORS,
    open_notebook,
    run_cells,
    write_notebook,
)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.correspondence_explorer import CorrespondenceExplorer
explorer = CorrespondenceExplorer(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"))
explorer"""


def wait_canvas(page, selector: str, min_colors: int, not_hash: int | None = None) -> dict:
    page.wait_for_function(
        """([selector, minColors, notHash]) => {
            const canvas = document.querySelector(selector);
            if (!canvas || !canvas.width) return false;
            const pixels = (%s)(canvas);
            return pixels.colors >= minColors && (notHash === null || pixels.hash !== notHash);
        }""" % CANVAS_PIXELS_JS, arg=[selector, min_colors, not_hash], timeout=TIMEOUT_MS, polling=200)
    return page.locator(selector).first.evaluate(CANVAS_PIXELS_JS)


def test_correspondence_explorer_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "correspondence.ipynb", SOURCE))
    run_cells(page, 1)
    widget = page.locator(".cnnw-correspondence")
    widget.wait_for(state="visible", timeout=TIMEOUT_MS)
    wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-a", 100)
    before = wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-b", 100)
    wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-curve", 3)
    assert "keypoint transfer" in widget.inner_text() and "cosine" in widget.inner_text()

    widget.locator("canvas.cnnw-co-a").click(position={"x": 60, "y": 70})  # the cat's left eye
    wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-b", 100, not_hash=before["hash"])
    assert not widget.locator(".cnnw-co-error").is_visible()
    widget.screenshot(path=str(artifacts_dir / "correspondence_explorer.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, errors
