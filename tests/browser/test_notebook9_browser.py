"""Notebook 09 in a real JupyterLab: its first widget cells run; NetworkMap and CorrespondenceExplorer render, and a
click on the map's blocks box opens the block."""

from __future__ import annotations

import pytest

from .conftest import console_errors, expand_blocks, open_notebook, run_cells, wait_network_map

pytestmark = pytest.mark.browser

TIMEOUT_MS = 180_000
NOTEBOOK = "09_the_rest_of_cs231n.ipynb"
CELLS = 8  # title, imports, NetworkMap (markdown, map, totals, markdown), correspondence (markdown, explorer)


def test_notebook9_first_widgets_render_and_react(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, CELLS, timeout_ms=TIMEOUT_MS)
    network = wait_network_map(page, TIMEOUT_MS)
    page.locator(".cnnw-correspondence canvas.cnnw-co-b").wait_for(state="visible", timeout=TIMEOUT_MS)

    expand_blocks(network, TIMEOUT_MS)  # open the 16 MBConv blocks
    assert not network.locator(".cnnw-nm-error").is_visible()
    network.screenshot(path=str(artifacts_dir / "notebook9_network_map.png"))
    assert not console_errors(page), console_errors(page)
