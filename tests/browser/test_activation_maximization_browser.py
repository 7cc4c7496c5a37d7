"""ActivationMaximization in a real JupyterLab: the run button optimizes in the background and the image changes;
a batch of two shows its Gram similarity and enables the diversity slider; the parameterizations side by side, and
a clip that loops."""

from __future__ import annotations

import pytest

from .conftest import CANVAS_PIXELS_JS, canvas_pixels, console_errors, open_notebook, run_cells, show_widget, wait_canvas, write_notebook

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000

SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.activation_maximization import ActivationMaximization
am = ActivationMaximization(zoo.efficientnet_lite0(device="cpu"), "goldfish", size=96, steps=12, every=3)
am"""


def test_activation_maximization_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget = show_widget(page, jupyter_server, "fv_activation_maximization.ipynb", SOURCE, ".cnnw-activation-maximization", TIMEOUT_MS)
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


SWITCH_SOURCE = """from IPython.display import display
from cnnwidgets import zoo
from cnnwidgets.widgets.activation_maximization import ActivationMaximization
digits = ActivationMaximization(zoo.digits_cnn(), "3", prior=zoo.digits_generator(), size=32, steps=16, every=8,
                                lr=0.1, jitter=1, rotate=0, scale=0)
clip = ActivationMaximization(zoo.motion_cnn("c3d"), layer="features.conv2", channel=3, lr=0.1, steps=8, every=4)
display(digits)
clip"""


def test_parameterizations_side_by_side_and_a_looping_clip(jupyter_server, browser_page, artifacts_dir):
    """The compare box shows pixels, Fourier and generator in a row; on a video model the clip loops in the browser
    (its canvas changes with no message from Python), and "slow" / side by side show the slow and the fast clip."""
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "fv_activation_maximization_switch.ipynb", SWITCH_SOURCE))
    run_cells(page, 1)
    digits, clip = page.locator(".cnnw-activation-maximization").nth(0), page.locator(".cnnw-activation-maximization").nth(1)
    clip.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert [o.get_attribute("value") for o in digits.locator("select.cnnw-param option").all()] == ["pixel", "fourier", "generator"]
    digits.locator("input.cnnw-compare").check()
    page.wait_for_function("() => /generator: p = /.test(document.querySelectorAll('.cnnw-activation-maximization')[0]"
                           ".querySelector('.cnnw-images').textContent)", timeout=TIMEOUT_MS)
    assert digits.locator("canvas.cnnw-result").count() == 3 and digits.locator("select.cnnw-param").is_disabled()
    text = digits.locator(".cnnw-images").inner_text()
    assert "pixel: p = " in text and "fourier: p = " in text

    first = canvas_pixels(clip.locator("canvas.cnnw-result").first)
    assert first["colors"] > 50
    page.wait_for_function("(hash) => (%s)(document.querySelectorAll('.cnnw-activation-maximization')[1]"
                           ".querySelector('canvas.cnnw-result')).hash !== hash" % CANVAS_PIXELS_JS, arg=first["hash"],
                           timeout=TIMEOUT_MS, polling=100)  # the next frame, drawn by the browser's own loop
    clip.locator("button.cnnw-slow").click()
    page.wait_for_function("() => /temporal smoothness.*1000/.test(document.querySelectorAll('.cnnw-activation-maximization')[1]"
                           ".textContent)", timeout=TIMEOUT_MS)
    clip.locator("input.cnnw-compare").check()
    page.wait_for_function("() => /slow: frame change/.test(document.querySelectorAll('.cnnw-activation-maximization')[1]"
                           ".querySelector('.cnnw-images').textContent)", timeout=TIMEOUT_MS)
    assert clip.locator("canvas.cnnw-result").count() == 2 and "fast: frame change" in clip.locator(".cnnw-images").inner_text()
    assert not clip.locator(".cnnw-error").is_visible() and not digits.locator(".cnnw-error").is_visible()
    page.locator(".jp-OutputArea").first.screenshot(path=str(artifacts_dir / "activation_maximization_switch.png"))
    assert not console_errors(page), console_errors(page)
