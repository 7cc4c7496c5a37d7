"""InvarianceProbe in a real JupyterLab: the widget renders its image and curves; the shift slider redraws them."""

from __future__ import annotations

import pytest

from .conftest import CANVAS_PIXELS_JS, IGNORED_CONSOLE_ERRORS, open_notebook, run_cells, write_notebook

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.invariance_probe import InvarianceProbe
probe = InvarianceProbe(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"))
probe"""


def wait_canvas(page, selector: str, min_colors: int = 2, not_hash: int | None = None, timeout: int = TIMEOUT_MS) -> dict:
    """Wait until canvas `selector` shows at least `min_colors` colours and, if given, pixels other than `not_hash`."""
    page.wait_for_function(
        """([selector, minColors, notHash]) => {
            const canvas = document.querySelector(selector);
            if (!canvas || canvas.hidden || !canvas.width || !canvas.height) return false;
            const pixels = (%s)(canvas);
            return pixels.colors >= minColors && (notHash === null || pixels.hash !== notHash);
        }""" % CANVAS_PIXELS_JS,
        arg=[selector, min_colors, not_hash], timeout=timeout, polling=200)
    return page.locator(selector).first.evaluate(CANVAS_PIXELS_JS)


def console_errors(page) -> list[str]:
    return [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]


def test_invariance_probe_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "fv_invariance_probe.ipynb", SOURCE))
    run_cells(page, 1)
    widget = page.locator(".cnnw-invariance-probe")
    widget.wait_for(state="visible", timeout=TIMEOUT_MS)
    image = wait_canvas(page, ".cnnw-invariance-probe canvas.cnnw-image", min_colors=100)
    curve = wait_canvas(page, ".cnnw-invariance-probe canvas.cnnw-curve-translate", min_colors=5)
    assert "Egyptian cat" in widget.locator(".cnnw-predictions").inner_text()

    widget.locator("input[type=range]").first.fill("30")  # shift 30 px
    wait_canvas(page, ".cnnw-invariance-probe canvas.cnnw-image", min_colors=100, not_hash=image["hash"])
    wait_canvas(page, ".cnnw-invariance-probe canvas.cnnw-curve-translate", min_colors=5, not_hash=curve["hash"])  # marker moved
    assert "30 px" in widget.inner_text()
    assert not widget.locator(".cnnw-error").is_visible()
    widget.screenshot(path=str(artifacts_dir / "invariance_probe.png"))
    assert not console_errors(page), console_errors(page)
