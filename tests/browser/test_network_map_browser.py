"""NetworkMap in a real JupyterLab: the graph draws, a click on a block expands it, a click on a layer opens
LayerExplorer on that layer below the map."""

from __future__ import annotations

import pytest

from .conftest import (
    CANVAS_PIXELS_JS,
    IGNORED_CONSOLE_ERRORS,
    open_notebook,
    run_cells,
    write_notebook,
)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.network_map import NetworkMap
network = NetworkMap(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"))
network.viewer()"""
BOX_PITCH = 64  # js/src/shared/graph.js: box height 40 + rank gap 24; margin 12
# collapsed Lite0 is a chain: input, _conv_stem, _bn0, _stem_act, _blocks, _conv_head, …; unit i sits on rank i
STEM_ACT_RANK, BLOCKS_RANK = 3, 4


def box_point(rank: int) -> dict:
    return {"x": 60, "y": 12 + rank * BOX_PITCH + 20}


def test_network_map_clicks_through_to_layer_explorer(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "network_map.ipynb", SOURCE))
    run_cells(page, 1)
    widget = page.locator(".cnnw-network-map")
    widget.wait_for(state="visible", timeout=TIMEOUT_MS)
    canvas = widget.locator("canvas.cnnw-nm-canvas")
    page.wait_for_function("(selector) => { const c = document.querySelector(selector); return c && c.height > 500; }",
                           arg=".cnnw-network-map canvas.cnnw-nm-canvas", timeout=TIMEOUT_MS)
    assert "4,652,008 parameters" in widget.inner_text()
    before = canvas.evaluate(CANVAS_PIXELS_JS)

    canvas.click(position=box_point(BLOCKS_RANK))  # expand _blocks: 16 MBConv boxes replace one
    widget.locator(".cnnw-nm-chip", has_text="_blocks").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("(selector) => document.querySelector(selector).height > 1200",
                           arg=".cnnw-network-map canvas.cnnw-nm-canvas", timeout=TIMEOUT_MS)
    assert canvas.evaluate(CANVAS_PIXELS_JS)["hash"] != before["hash"]

    canvas.hover(position=box_point(STEM_ACT_RANK))
    assert "_stem_act" in widget.locator(".cnnw-nm-tip").inner_text()
    canvas.click(position=box_point(STEM_ACT_RANK))  # open the stem's activation in LayerExplorer
    explorer = page.locator(".cnnw-layer-explorer")
    explorer.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('.cnnw-layer-explorer select.cnnw-layer')?.value === '_stem_act'",
                           timeout=TIMEOUT_MS)
    assert not widget.locator(".cnnw-nm-error").is_visible()
    page.locator(".jp-OutputArea").first.screenshot(path=str(artifacts_dir / "network_map.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, errors
