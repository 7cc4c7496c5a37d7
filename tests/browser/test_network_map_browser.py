"""NetworkMap in a real JupyterLab: the graph draws, a click on a block expands it, a click on a layer opens
LayerExplorer on that layer below the map."""

from __future__ import annotations

import pytest

from .conftest import (
    CANVAS_PIXELS_JS,
    STEM_ACT_RANK,
    console_errors,
    expand_blocks,
    network_map_box,
    show_widget,
    wait_network_map,
)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.network_map import NetworkMap
network = NetworkMap(zoo.efficientnet_lite0(device="cpu"), zoo.sample_image("cat"))
network.viewer()"""


def test_network_map_clicks_through_to_layer_explorer(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    show_widget(page, jupyter_server, "network_map.ipynb", SOURCE, ".cnnw-network-map", TIMEOUT_MS)
    widget = wait_network_map(page, TIMEOUT_MS)
    canvas = widget.locator("canvas.cnnw-nm-canvas")
    before = canvas.evaluate(CANVAS_PIXELS_JS)

    expand_blocks(widget, TIMEOUT_MS)  # 16 MBConv boxes replace one
    page.wait_for_function("(selector) => document.querySelector(selector).height > 1200",
                           arg=".cnnw-network-map canvas.cnnw-nm-canvas", timeout=TIMEOUT_MS)
    assert canvas.evaluate(CANVAS_PIXELS_JS)["hash"] != before["hash"]

    canvas.hover(position=network_map_box(STEM_ACT_RANK))
    assert "_stem_act" in widget.locator(".cnnw-nm-tip").inner_text()
    canvas.click(position=network_map_box(STEM_ACT_RANK))  # open the stem's activation in LayerExplorer
    explorer = page.locator(".cnnw-layer-explorer")
    explorer.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('.cnnw-layer-explorer select.cnnw-layer')?.value === '_stem_act'",
                           timeout=TIMEOUT_MS)
    assert not widget.locator(".cnnw-nm-error").is_visible()
    page.locator(".jp-OutputArea").first.screenshot(path=str(artifacts_dir / "network_map.png"))
    assert not console_errors(page), console_errors(page)
