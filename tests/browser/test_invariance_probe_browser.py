"""InvarianceProbe in a real JupyterLab: the widget renders its image and curves; the shift slider redraws them."""

from __future__ import annotations

import pytest

from .conftest import console_errors, show_widget, wait_canvas

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.invariance_probe import InvarianceProbe
probe = InvarianceProbe(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"))
probe"""


def test_invariance_probe_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget = show_widget(page, jupyter_server, "fv_invariance_probe.ipynb", SOURCE, ".cnnw-invariance-probe", TIMEOUT_MS)
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
