"""The widget runtime in a real JupyterLab: bad values sent by the browser are refused (the control returns to the
last good value, the error box says why), and each widget's stylesheet is scoped, so widgets in one notebook look
exactly as they do alone; a screenshot of the three in the dark theme (docs/runtime_dark_theme.png).

One kernel serves the whole test (the "alone" notebook's, shared with the "together" one): each kernel start
imports torch and builds the model; with a kernel per notebook (four) the test took 90 s, with one 35 s (both in
one run here, on a loaded 2-core machine)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .conftest import console_errors, open_notebook, run_cells, share_kernel, write_notebook

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 90_000
UPDATE_TIMEOUT_MS = 30_000
SETUP = """
import torch
torch.set_num_threads(1)
from cnnwidgets import LayerExplorer, OcclusionSlider, SaliencyOverlay, TopActivations, zoo
inspector = zoo.digits_cnn()
digit = zoo.digits("test")[0][0]
index = inspector.index(zoo.digits("test"), ["relu1", "relu3"], k=4, progress=False)
"""
WIDGETS = {
    "cnnw-layer-explorer": "LayerExplorer(inspector, digit)",
    "cnnw-saliency-overlay": "SaliencyOverlay(inspector, digit)",
    "cnnw-top-activations": "TopActivations(index, 'relu3', 1)",
}
# The parts whose styles two widgets used to define differently (and so restyled each other): per widget root,
# every element under it with one of these classes, and the root itself.
STYLED = [".cnnw-row", ".cnnw-controls", ".cnnw-predictions", ".cnnw-bar-track", ".cnnw-bar", ".cnnw-percent",
          ".cnnw-error", ".cnnw-note", ".cnnw-caption", ".cnnw-panel", ".cnnw-value", "label", "canvas"]
PROPERTIES = ["display", "gap", "grid-template-columns", "align-items", "font-size", "font-weight", "height", "width",
              "background-color", "color", "white-space", "image-rendering", "flex-direction"]
STYLES_JS = """([root, selectors, properties]) => {
    const widget = document.querySelector(`.${root}`);
    if (!widget) return null;
    const read = (element) => Object.fromEntries(properties.map((p) => [p, getComputedStyle(element).getPropertyValue(p)]));
    const styles = { root: read(widget) };
    for (const selector of selectors) {
        [...widget.querySelectorAll(selector)].slice(0, 3).forEach((element, i) => { styles[`${selector}#${i}`] = read(element); });
    }
    return styles;
}"""


def widget_styles(page, root: str) -> dict:
    page.locator(f".{root}").first.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # the first drawing after the first data
    return page.evaluate(STYLES_JS, [root, STYLED, PROPERTIES])


def set_theme(server, theme: str) -> None:
    """Pick JupyterLab's theme through its settings API (a page loaded afterwards uses it)."""
    url = f"{server.base_url}/lab/api/settings/@jupyterlab/apputils-extension:themes"
    body = json.dumps({"raw": json.dumps({"theme": theme})}).encode()
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Authorization": f"token {server.token}", "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


def alone_cells() -> list[str]:
    """One cell per widget, each closing the one before (Python closes its view too), so each is alone on the page."""
    cells, previous = [], None
    for source in WIDGETS.values():
        closing = f"{previous}.close()\n" if previous else ""
        cells.append(f"{closing}shown = {source}\ndisplay(shown)")
        previous = "shown"
    return cells


def screenshot_widgets(page, path) -> None:
    """The output area from the top of the first of WIDGETS to the bottom of the last, with the page made tall enough
    to show them whole (JupyterLab scrolls the notebook inside a fixed window, so a screenshot shows only what fits)."""
    first, last = (page.locator(f".{root}").first for root in (list(WIDGETS)[0], list(WIDGETS)[-1]))
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell-outputArea").first
    span = last.bounding_box()["y"] + last.bounding_box()["height"] - first.bounding_box()["y"]
    page.set_viewport_size({"width": page.viewport_size["width"], "height": round(span) + 400})
    first.evaluate("(root) => root.scrollIntoView({ block: 'start' })")
    page.wait_for_timeout(500)  # relayout at the new size
    area, top, bottom = outputs.bounding_box(), first.bounding_box(), last.bounding_box()
    assert top["y"] >= 0 and bottom["y"] + bottom["height"] <= page.viewport_size["height"], (top, bottom)
    page.screenshot(path=str(path), clip={"x": area["x"], "y": top["y"], "width": area["width"],
                                          "height": bottom["y"] + bottom["height"] - top["y"]})


def test_widgets_look_the_same_together_as_alone_in_the_dark_theme_and_refuse_bad_values(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    # alone: one kernel runs the setup once, then shows each widget by itself in turn
    alone_notebook = write_notebook(jupyter_server, "alone.ipynb", SETUP, *alone_cells())
    open_notebook(page, jupyter_server, alone_notebook)
    run_cells(page, 1)
    alone = {}
    for cell, root in enumerate(WIDGETS, start=1):
        run_cells(page, 1, start=cell)
        for other in WIDGETS:
            if other != root:
                page.locator(f".{other}").first.wait_for(state="detached", timeout=UPDATE_TIMEOUT_MS)
        alone[root] = widget_styles(page, root)
        assert len(alone[root]) > 5, alone[root]

    # together, with an OcclusionSlider too (for the refused values below), in the dark theme, on the same kernel
    together = "shown.close()\n" + "\n".join(f"display({source})" for source in WIDGETS.values())
    together += "\nslider = OcclusionSlider(inspector, digit, patch=8, stride=4, layer='relu1', channel=0)\ndisplay(slider)"
    notebook = write_notebook(jupyter_server, "together.ipynb", together)
    share_kernel(jupyter_server, notebook, with_notebook=alone_notebook)
    set_theme(jupyter_server, "JupyterLab Dark")
    try:
        open_notebook(page, jupyter_server, notebook)
        run_cells(page, 1)
        for root in WIDGETS:
            page.locator(f".{root}").first.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
        page.wait_for_timeout(1500)
        dark = {root: page.evaluate(STYLES_JS, [root, STYLED, PROPERTIES]) for root in WIDGETS}
        screenshot_widgets(page, artifacts_dir / "runtime_dark_theme.png")
        refuse_bad_values(page)
    finally:
        set_theme(jupyter_server, "JupyterLab Light")
    for root in WIDGETS:
        for part, styles in alone[root].items():
            for name, value in styles.items():
                if name in ("color", "background-color"):
                    continue  # the theme changed on purpose: compared below
                assert dark[root][part][name] == value, (root, part, name)
    # the dark theme reaches the widgets: light text, not the light theme's near-black
    for root in WIDGETS:
        text = dark[root]["root"]["color"]
        assert min(int(v) for v in text[text.index("(") + 1:text.index(")")].split(",")[:3]) > 150, (root, text)
    assert console_errors(page) == []


def refuse_bad_values(page) -> None:
    """LayerExplorer: a layer name the model lacks, chosen in the layer picker; OcclusionSlider: a channel number
    out of range typed into its box. Each comes back to the good value, and the error box says why."""
    explorer = page.locator(".cnnw-layer-explorer")
    layer = explorer.locator("select.cnnw-layer")
    good = layer.input_value()
    layer.evaluate("(select) => { select.append(new Option('nope', 'nope')); select.value = 'nope';"
                   " select.dispatchEvent(new Event('change')); }")
    error = explorer.locator(".cnnw-error")
    error.wait_for(state="visible", timeout=UPDATE_TIMEOUT_MS)
    assert "unknown layer 'nope'" in error.inner_text()
    page.wait_for_function("([select, good]) => document.querySelector(select).value === good",
                           arg=[".cnnw-layer-explorer select.cnnw-layer", good], timeout=UPDATE_TIMEOUT_MS)

    slider = page.locator(".cnnw-occlusion")
    channel = slider.locator("input.cnnw-channel")
    channel.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    channel.fill("99999")
    channel.dispatch_event("change")
    error = slider.locator(".cnnw-error")
    error.wait_for(state="visible", timeout=UPDATE_TIMEOUT_MS)
    assert "channel 99999 is out of range" in error.inner_text()
    page.wait_for_function("() => document.querySelector('.cnnw-occlusion input.cnnw-channel').value === '0'",
                           timeout=UPDATE_TIMEOUT_MS)
