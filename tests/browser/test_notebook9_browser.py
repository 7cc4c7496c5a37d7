"""Notebook 09 in a real JupyterLab: its first widget cells run; NetworkMap and CorrespondenceExplorer render, and a
click on the map's blocks box opens the block."""

from __future__ import annotations

import pytest

from .conftest import IGNORED_CONSOLE_ERRORS, open_notebook, run_cells
from .test_network_map_browser import BLOCKS_RANK, box_point

pytestmark = pytest.mark.browser

TIMEOUT_MS = 180_000
NOTEBOOK = "09_the_rest_of_cs231n.ipynb"
CELLS = 8  # title, imports, NetworkMap (markdown, map, totals, markdown), correspondence (markdown, explorer)


def test_notebook9_first_widgets_render_and_react(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, CELLS, timeout_ms=TIMEOUT_MS)
    network = page.locator(".cnnw-network-map")
    network.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.locator(".cnnw-correspondence canvas.cnnw-co-b").wait_for(state="visible", timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('.cnnw-network-map canvas.cnnw-nm-canvas')?.height > 500",
                           timeout=TIMEOUT_MS)
    assert "4,652,008 parameters" in network.inner_text()

    network.locator("canvas.cnnw-nm-canvas").click(position=box_point(BLOCKS_RANK))  # open the 16 MBConv blocks
    network.locator(".cnnw-nm-chip", has_text="_blocks").wait_for(timeout=TIMEOUT_MS)
    assert not network.locator(".cnnw-nm-error").is_visible()
    network.screenshot(path=str(artifacts_dir / "notebook9_network_map.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, errors
