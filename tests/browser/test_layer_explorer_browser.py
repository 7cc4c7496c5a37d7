"""LayerExplorer in a real JupyterLab: the tour notebook renders the widget, and clicks and pickers redraw it."""

from __future__ import annotations

import math
import re

import pytest

from .conftest import IGNORED_CONSOLE_ERRORS, canvas_pixels, open_notebook, run_cells, wait_canvas

pytestmark = pytest.mark.browser

TOUR = "00_tour.ipynb"
EXPLORER_CELLS = 6  # markdown, imports, the NetworkMap (markdown, code), markdown, `explorer = cnnwidgets.LayerExplorer(inspector, cat)`
RENDER_TIMEOUT_MS = 60_000
UPDATE_TIMEOUT_MS = 30_000
OTHER_LAYER = "_blocks.5._expand_act"
OTHER_COLORMAP = "magma"


def wait_pixels(page, selector: str, *, min_colors: int = 2, not_hash: int | None = None, timeout: int = UPDATE_TIMEOUT_MS) -> dict:
    return wait_canvas(page, f".cnnw-layer-explorer {selector}", min_colors, not_hash, timeout)


def selected_channel_count(layer_select) -> int:
    """Channels of the selected layer, read from its option label `name — C×H×W`."""
    label = layer_select.evaluate("(select) => select.selectedOptions[0].textContent")
    match = re.search(r"(\d+)×\d+×\d+", label)
    assert match, f"layer option label {label!r} does not end in C×H×W"
    return int(match.group(1))


def click_channel(grid, channels: int, channel: int) -> None:
    """Click the centre of `channel`'s cell; the grid is ceil(sqrt(C)) columns of equal cells 1 px apart."""
    size = grid.evaluate("(c) => ({ width: c.width, height: c.height, cssWidth: c.getBoundingClientRect().width,"
                         " cssHeight: c.getBoundingClientRect().height })")
    cols = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / cols)
    gap = 1
    cell_w = (size["width"] - (cols - 1) * gap) / cols
    cell_h = (size["height"] - (rows - 1) * gap) / rows
    row, col = divmod(channel, cols)
    x = (col * (cell_w + gap) + cell_w / 2) * size["cssWidth"] / size["width"]
    y = (row * (cell_h + gap) + cell_h / 2) * size["cssHeight"] / size["height"]
    grid.click(position={"x": x, "y": y})


def test_layer_explorer_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, TOUR)
    run_cells(page, EXPLORER_CELLS)

    widget = page.locator(".cnnw-layer-explorer")
    grid = widget.locator("canvas.cnnw-grid")
    grid.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    assert widget.count() == 1

    # the grid shows real maps: many colours, not a blank or single-colour canvas
    first_grid = wait_pixels(page, "canvas.cnnw-grid", min_colors=8, timeout=RENDER_TIMEOUT_MS)
    assert first_grid["width"] > 100 and first_grid["height"] > 100, first_grid
    assert canvas_pixels(widget.locator("canvas.cnnw-input"))["colors"] > 100  # the cat photo
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(artifacts_dir / "layer_explorer.png"))

    # no channel selected yet: the enlarged view is hidden and the caption says what to do
    channel_canvas = widget.locator("canvas.cnnw-channel")
    caption = widget.locator(".cnnw-channel-info")
    before_click = canvas_pixels(channel_canvas)
    assert not before_click["shown"]
    assert "click a map" in caption.inner_text()

    layer_select = widget.locator("select.cnnw-layer")
    channels = selected_channel_count(layer_select)
    assert channels > 3
    assert re.fullmatch(rf"\d+ of {channels} channels dead on this image", widget.locator(".cnnw-stats").inner_text())
    assert canvas_pixels(widget.locator("canvas.cnnw-filters"))["colors"] > 8  # first conv's RGB filters

    # click channel 3's cell: the caption names it and the enlarged channel is drawn
    click_channel(grid, channels, 3)
    page.wait_for_function(
        "() => /^channel 3:/.test(document.querySelector('.cnnw-layer-explorer .cnnw-channel-info')?.textContent ?? '')",
        timeout=UPDATE_TIMEOUT_MS,
    )
    channel_3 = wait_pixels(page, "canvas.cnnw-channel", min_colors=2)
    assert channel_3["hash"] != before_click["hash"]
    assert re.match(r"channel 3: min \S+ max \S+", caption.inner_text()), caption.inner_text()

    # another channel: other pixels
    other = min(channels - 1, 10)
    click_channel(grid, channels, other)
    page.wait_for_function(
        "(n) => (document.querySelector('.cnnw-layer-explorer .cnnw-channel-info')?.textContent ?? '').startsWith(`channel ${n}:`)",
        arg=other,
        timeout=UPDATE_TIMEOUT_MS,
    )
    wait_pixels(page, "canvas.cnnw-channel", min_colors=2, not_hash=channel_3["hash"])

    # another layer: the kernel computes its maps and sends them back asynchronously
    grid_before_layer = canvas_pixels(grid)
    layer_select.select_option(OTHER_LAYER)
    wait_pixels(page, "canvas.cnnw-grid", min_colors=8, not_hash=grid_before_layer["hash"], timeout=RENDER_TIMEOUT_MS)
    assert layer_select.input_value() == OTHER_LAYER
    assert caption.inner_text().startswith(f"channel {other}:")  # the channel stays selected on the new layer
    new_channels = selected_channel_count(layer_select)
    page.wait_for_function(
        "(n) => (document.querySelector('.cnnw-layer-explorer .cnnw-stats')?.textContent ?? '').includes(`of ${n} channels`)",
        arg=new_channels,
        timeout=UPDATE_TIMEOUT_MS,
    )
    page.wait_for_function(
        "() => document.querySelector('.cnnw-layer-explorer .cnnw-note')?.hidden !== false",
        timeout=RENDER_TIMEOUT_MS,
    )  # "computing…" gone

    # another colormap: recoloured in the browser, no round trip needed
    colormap_select = widget.locator("select.cnnw-colormap")
    grid_before_colormap = canvas_pixels(grid)
    assert colormap_select.input_value() != OTHER_COLORMAP
    colormap_select.select_option(OTHER_COLORMAP)
    wait_pixels(page, "canvas.cnnw-grid", min_colors=8, not_hash=grid_before_colormap["hash"])
    assert colormap_select.input_value() == OTHER_COLORMAP

    # nothing failed along the way
    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(artifacts_dir / "layer_explorer_final.png"))
    page.screenshot(path=str(artifacts_dir / "layer_explorer_page.png"))
    (artifacts_dir / "layer_explorer_console_errors.txt").write_text("\n".join(page.console_errors) + "\n")
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)
