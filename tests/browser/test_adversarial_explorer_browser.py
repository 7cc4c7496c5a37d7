"""AdversarialExplorer in a real JupyterLab: the epsilon slider re-runs the attack, the button grows a fooling image."""

from __future__ import annotations

import pytest

from .conftest import console_errors, show_widget, wait_canvas

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000

SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.adversarial_explorer import AdversarialExplorer
attack = AdversarialExplorer(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"), method="fgsm", epsilon=1)
attack"""


def test_adversarial_explorer_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget = show_widget(page, jupyter_server, "fv_adversarial_explorer.ipynb", SOURCE, ".cnnw-adversarial-explorer", TIMEOUT_MS)
    perturbation = wait_canvas(page, ".cnnw-adversarial-explorer canvas.cnnw-perturbation", min_colors=3)
    wait_canvas(page, ".cnnw-adversarial-explorer canvas.cnnw-saliency-original", min_colors=20)
    assert "ε = 1/255" in widget.locator(".cnnw-summary").inner_text()

    widget.locator("input.cnnw-epsilon").fill("12")
    page.wait_for_function("() => document.querySelector('.cnnw-adversarial-explorer .cnnw-summary').textContent.includes('ε = 12/255')",
                           timeout=TIMEOUT_MS)
    wait_canvas(page, ".cnnw-adversarial-explorer canvas.cnnw-adversarial", min_colors=100)
    assert "flipped" in widget.locator(".cnnw-summary").inner_text()

    target = widget.locator("input.cnnw-target")  # a class typed by name travels as its index
    target.fill("goldfish")
    target.dispatch_event("change")
    page.wait_for_function("() => document.querySelector('.cnnw-adversarial-explorer .cnnw-summary').textContent.includes('toward \"goldfish\"')",
                           timeout=TIMEOUT_MS)
    target.fill("")
    target.dispatch_event("change")
    page.wait_for_function("() => document.querySelector('.cnnw-adversarial-explorer .cnnw-summary').textContent.includes('away from')",
                           timeout=TIMEOUT_MS)

    widget.locator("button.cnnw-fool").click()
    wait_canvas(page, ".cnnw-adversarial-explorer canvas.cnnw-fooling", min_colors=50)
    page.wait_for_function("() => document.querySelector('.cnnw-adversarial-explorer .cnnw-fooling + .cnnw-caption')?.textContent.includes('goldfish')",
                           timeout=TIMEOUT_MS)
    assert not widget.locator(".cnnw-error").is_visible()
    assert perturbation["width"] > 100
    widget.screenshot(path=str(artifacts_dir / "adversarial_explorer.png"))
    assert not console_errors(page), console_errors(page)
