"""AttributeSlices in a real JupyterLab: the bins draw with their counts, a click on a bin shows its images with
their predictions, another attribute redraws the bins."""

from __future__ import annotations

import pytest

from .conftest import IGNORED_CONSOLE_ERRORS, open_notebook, run_cells, write_notebook

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.attribute_slices import AttributeSlices
slices = AttributeSlices(zoo.digits_cnn(), zoo.digits("test"), bins=4, limit=96)
slices"""


def test_attribute_slices_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "attribute_slices.ipynb", SOURCE))
    run_cells(page, 1)
    widget = page.locator(".cnnw-attribute-slices")
    widget.wait_for(state="visible", timeout=TIMEOUT_MS)
    bins = widget.locator(".cnnw-as-bin")
    page.wait_for_function("""() => document.querySelectorAll('.cnnw-attribute-slices .cnnw-as-bin').length === 4
        && document.querySelector('.cnnw-attribute-slices .cnnw-as-summary').textContent.startsWith('96 images: accuracy')""",
                           timeout=TIMEOUT_MS)
    assert sum(int(text.split("n=")[1]) for text in widget.locator(".cnnw-as-count").all_inner_texts()) == 96

    bins.nth(2).click()  # the third brightness bin: its 24 images appear with their predictions
    images = widget.locator(".cnnw-as-image canvas")
    images.first.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert images.count() == 24 and "24 of 24 images" in widget.locator(".cnnw-as-caption").inner_text()
    assert "(true " in widget.locator(".cnnw-as-image").first.inner_text()
    assert "cnnw-as-selected" in (bins.nth(2).get_attribute("class") or "")

    widget.locator("select.cnnw-as-attribute").select_option("contrast")  # a new attribute: new bins, no images
    page.wait_for_function("() => !document.querySelector('.cnnw-attribute-slices .cnnw-as-image')", timeout=TIMEOUT_MS)
    assert "contrast" in widget.inner_text() and not widget.locator(".cnnw-error").is_visible()
    widget.screenshot(path=str(artifacts_dir / "attribute_slices.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, errors
