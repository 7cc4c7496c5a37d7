"""CodeInversion in a real JupyterLab: the run button reconstructs from each layer, updating the pictures."""

from __future__ import annotations

import pytest

from .conftest import console_errors, show_widget, wait_canvas

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000

SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.code_inversion import CodeInversion
inversion = CodeInversion(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"), layers=["_stem_act", "_blocks.3"],
                          size=64, steps=10, every=5)
inversion"""


def test_code_inversion_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget = show_widget(page, jupyter_server, "fv_code_inversion.ipynb", SOURCE, ".cnnw-code-inversion", TIMEOUT_MS)
    wait_canvas(page, ".cnnw-code-inversion canvas.cnnw-original", min_colors=100)
    first = wait_canvas(page, ".cnnw-code-inversion canvas.cnnw-reconstruction", min_colors=5)
    widget.locator("button.cnnw-run").click()
    wait_canvas(page, ".cnnw-code-inversion canvas.cnnw-reconstruction", min_colors=50, not_hash=first["hash"])
    page.wait_for_function("() => document.querySelector('.cnnw-code-inversion .cnnw-status').textContent === 'step 10'",
                           timeout=TIMEOUT_MS)
    assert widget.locator(".cnnw-reconstruction").count() == 2
    assert "PSNR" in widget.inner_text() and not widget.locator(".cnnw-error").is_visible()
    widget.screenshot(path=str(artifacts_dir / "code_inversion.png"))
    assert not console_errors(page), console_errors(page)
