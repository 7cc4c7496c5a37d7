"""ActivationMaximization in a real JupyterLab: the run button optimizes in the background and the image changes;
a batch of two shows its Gram similarity and enables the diversity slider."""

from __future__ import annotations

import pytest

from .conftest import open_notebook, run_cells, write_notebook
from .test_invariance_probe_browser import TIMEOUT_MS, console_errors, wait_canvas

pytestmark = pytest.mark.browser

SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.activation_maximization import ActivationMaximization
am = ActivationMaximization(zoo.efficientnet_lite0(device="cpu"), "goldfish", size=96, steps=12, every=3)
am"""


def test_activation_maximization_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "fv_activation_maximization.ipynb", SOURCE))
    run_cells(page, 1)
    widget = page.locator(".cnnw-activation-maximization")
    widget.wait_for(state="visible", timeout=TIMEOUT_MS)
    start = wait_canvas(page, ".cnnw-activation-maximization canvas.cnnw-result", min_colors=5)
    run = widget.locator("button.cnnw-run")
    assert run.inner_text() == "run"

    run.click()
    page.wait_for_function("() => /step ([3-9]|1\\d)/.test(document.querySelector('.cnnw-activation-maximization .cnnw-status').textContent)",
                           timeout=TIMEOUT_MS)
    wait_canvas(page, ".cnnw-activation-maximization canvas.cnnw-result", min_colors=50, not_hash=start["hash"])
    page.wait_for_function("() => document.querySelector('.cnnw-activation-maximization button.cnnw-run').textContent === 'continue'",
                           timeout=TIMEOUT_MS)  # the run ended by itself after 12 steps
    assert "step 12" in widget.locator(".cnnw-status").inner_text()
    assert "p = " in widget.locator(".cnnw-images").inner_text()
    assert not widget.locator(".cnnw-error").is_visible()

    diversity = widget.locator("label:has-text('diversity') input[type=range]")
    assert diversity.is_disabled()  # one image: nothing to push apart
    count = widget.locator("input.cnnw-count")
    count.fill("2")
    count.dispatch_event("change")
    page.wait_for_function("() => /Gram similarity at \\S+: [01]\\.\\d\\d/.test("
                           "document.querySelector('.cnnw-activation-maximization .cnnw-similarity').textContent)", timeout=TIMEOUT_MS)
    assert diversity.is_enabled() and widget.locator("canvas.cnnw-result").count() == 2
    widget.screenshot(path=str(artifacts_dir / "activation_maximization.png"))
    assert not console_errors(page), console_errors(page)
