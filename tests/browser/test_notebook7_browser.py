"""The widgets render and react in Jupyter Notebook 7 too, not only in JupyterLab."""

from __future__ import annotations

import re

from .conftest import open_notebook, run_cells
from .test_layer_explorer_browser import EXPLORER_CELLS, IGNORED_CONSOLE_ERRORS, TOUR, canvas_pixels, click_channel, wait_pixels

# Notebook 7.6's own bundle throws at start-up under the test server's settings ("reading 'schema'", and after
# other tests "Command 'filebrowser:open-path' not registered"), with frames only inside its own
# static/notebook/notebook_core.js; it happens with no widget on the page, so it says nothing about ours, whose
# code runs from anywidget's module, not from that file.
NOTEBOOK7_OWN_ERRORS = re.compile(r"^pageerror: .*\(http://[^)]*/static/notebook/notebook_core\.")


def test_layer_explorer_in_notebook7(jupyter_server, browser_page):
    page = browser_page
    open_notebook(page, jupyter_server, TOUR, notebook7=True)
    run_cells(page, EXPLORER_CELLS)
    grid = page.locator(".cnnw-layer-explorer canvas.cnnw-grid")
    grid.wait_for(state="visible", timeout=60_000)
    assert wait_pixels(page, "canvas.cnnw-grid", min_colors=8)["colors"] >= 8
    before = canvas_pixels(page.locator(".cnnw-layer-explorer canvas.cnnw-channel"))
    click_channel(grid, 32, 5)
    page.locator(".cnnw-layer-explorer .cnnw-channel-info").filter(has_text="channel 5").wait_for(timeout=30_000)
    after = wait_pixels(page, "canvas.cnnw-channel", min_colors=2, not_hash=before["hash"])
    assert after["hash"] != before["hash"]
    page.locator(".cnnw-layer-explorer").screenshot(path="test-artifacts/layer_explorer_notebook7.png")
    assert not [e for e in page.console_errors
                if not IGNORED_CONSOLE_ERRORS.search(e) and not NOTEBOOK7_OWN_ERRORS.search(e)]
