"""CorrespondenceExplorer in a real JupyterLab: images, similarity and curve draw; a click in image a moves the
match in image b (a new similarity map)."""

from __future__ import annotations

import pytest

from .conftest import console_errors, show_widget, wait_canvas

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.correspondence_explorer import CorrespondenceExplorer
explorer = CorrespondenceExplorer(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"))
explorer"""


def test_correspondence_explorer_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget = show_widget(page, jupyter_server, "correspondence.ipynb", SOURCE, ".cnnw-correspondence", TIMEOUT_MS)
    wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-a", 100)
    before = wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-b", 100)
    wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-curve", 3)
    assert "keypoint transfer" in widget.inner_text() and "cosine" in widget.inner_text()

    widget.locator("canvas.cnnw-co-a").click(position={"x": 60, "y": 70})  # the cat's left eye
    wait_canvas(page, ".cnnw-correspondence canvas.cnnw-co-b", 100, not_hash=before["hash"])
    assert not widget.locator(".cnnw-co-error").is_visible()
    widget.screenshot(path=str(artifacts_dir / "correspondence_explorer.png"))
    assert not console_errors(page), console_errors(page)
