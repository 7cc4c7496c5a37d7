"""EmbeddingScatter in a real JupyterLab: dots render, t-SNE replaces PCA, hovering a dot shows its image,
scrolling zooms, shift-dragging selects a box of images and a lasso selects exactly the points inside it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.path import Path as Polygon

from .conftest import CANVAS_PIXELS_JS, IGNORED_CONSOLE_ERRORS, open_notebook, run_cells, show_widget

pytestmark = pytest.mark.browser

NOTEBOOK = "02_top_images_and_embeddings.ipynb"
CELLS = 15  # up to `scatter = cnnwidgets.EmbeddingScatter(index)`
RENDER_TIMEOUT_MS = 60_000
LAYOUT_TIMEOUT_MS = 120_000  # t-SNE of 1,797 points on a busy 2-core CPU
ROOT = ".cnnw-embedding-scatter"

# PCA is computed at once and deterministically; the kernel saves the layout the widget shows, so the test can
# decide independently which points a lasso encloses.
LASSO_SOURCE = """import numpy as np
import cnnwidgets
from cnnwidgets import zoo
scatter = cnnwidgets.EmbeddingScatter(zoo.digits_cnn().index(zoo.digits(), k=1), method="pca")
np.save("lasso_points.npy", scatter.wait().coordinates)
scatter"""
PLOT_SIZE = (640, 520)  # the canvas's own pixels (js/src/embedding_scatter.js WIDTH, HEIGHT)
PLOT_SQUARE = (72, 12, 496)  # at the initial view, layout [0, 1]² is this square (left, top, side) of the canvas
# a concave lasso, "U"-shaped, in CSS pixels from the plot's centre: every edge a multiple of 5 px, so the
# 5-step mouse moves land on whole pixels, each at least 3 px (the lasso's vertex spacing) from the last
LASSO_U = [(-50, -50), (50, -50), (50, 50), (15, 50), (15, -10), (-15, -10), (-15, 50), (-50, 50)]


# A pixel of the plot that belongs to a dot: saturated (not white, not gray), with saturated neighbours
# (the middle of a dot, not an anti-aliased edge).
FIND_DOT_JS = """() => {
    const canvas = document.querySelector('.cnnw-embedding-scatter canvas.cnnw-plot');
    const { width, height } = canvas;
    const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
    const saturated = (x, y) => {
        const i = (y * width + x) * 4;
        return Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 60;
    };
    for (let y = Math.floor(height / 4); y < height - 2; y += 2) {
        for (let x = Math.floor(width / 4); x < width - 2; x += 2) {
            if (saturated(x, y) && saturated(x + 1, y) && saturated(x, y + 1)) {
                const rect = canvas.getBoundingClientRect();
                return { x: x * rect.width / width, y: y * rect.height / height };
            }
        }
    }
    return null;
}"""


def pixels(locator) -> dict:
    return locator.evaluate(CANVAS_PIXELS_JS)


def show_pca_scatter(page, server, notebook: str, source: str, count: int, timeout_ms: int):
    """Run the one-cell `notebook` showing an EmbeddingScatter and wait for its PCA of `count` images; returns the
    widget and its plot canvas."""
    widget = show_widget(page, server, notebook, source, ROOT)
    plot = widget.locator("canvas.cnnw-plot")
    plot.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_function(
        "(count) => new RegExp(`PCA of ${count} images`).test(document.querySelector('.cnnw-embedding-scatter .cnnw-status')?.textContent ?? '')",
        arg=count, timeout=timeout_ms, polling=250,
    )
    return widget, plot


def to_layout(box: dict, client: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Client points over the plot `box` in layout coordinates: the widget's arithmetic (canvasPoint, then toLayout
    at the initial view)."""
    left, top, side = PLOT_SQUARE
    return [(((x - box["x"]) * PLOT_SIZE[0] / box["width"] - left) / side,
             ((y - box["y"]) * PLOT_SIZE[1] / box["height"] - top) / side) for x, y in client]


def draw_lasso(page, widget, client: list[tuple[int, int]], steps: int = 1) -> None:
    """Pick "select with a lasso" and drag the mouse through the `client` points (`steps` moves per edge)."""
    widget.locator("select.cnnw-drag-mode").select_option("lasso")
    page.mouse.move(*client[0])
    page.mouse.down()
    for vertex in client[1:]:
        page.mouse.move(*vertex, steps=steps)
    page.mouse.up()


def assert_selected(page, widget, expected: list[int], timeout_ms: int) -> None:
    """Wait until the widget says `len(expected)` images are selected; its thumbnails are theirs, in id order."""
    page.wait_for_function(
        "(count) => document.querySelector('.cnnw-embedding-scatter .cnnw-selected-info').textContent.startsWith(`${count} images selected`)",
        arg=len(expected), timeout=timeout_ms, polling=100,
    )
    titles = widget.locator(".cnnw-selected canvas").evaluate_all("(canvases) => canvases.map((c) => c.title)")
    assert titles == [f"#{i}" for i in expected[:200]], (widget.locator(".cnnw-selected-info").inner_text(), titles[:10], expected[:10])


def test_embedding_scatter_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, CELLS)

    widget = page.locator(ROOT)
    plot = widget.locator("canvas.cnnw-plot")
    plot.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    assert widget.count() == 1

    # PCA at once, t-SNE when ready: the status says so and the dots move
    page.wait_for_function(
        "() => /t-SNE of 1797 images/.test(document.querySelector('.cnnw-embedding-scatter .cnnw-status')?.textContent ?? '')",
        timeout=LAYOUT_TIMEOUT_MS, polling=250,
    )
    page.wait_for_timeout(300)  # the last frame
    drawn = pixels(plot)
    assert drawn["colors"] >= 10, drawn  # ten classes of dots on white
    legend = widget.locator(".cnnw-legend").inner_text()
    assert "0 (178)" in legend and "9 (180)" in legend

    # hover a dot: its thumbnail appears next to the cursor, with its label and prediction
    hover = widget.locator(".cnnw-hover")
    assert not hover.is_visible()
    plot.scroll_into_view_if_needed()  # mouse events only reach what is inside the viewport
    page.wait_for_timeout(300)
    dot = page.evaluate(FIND_DOT_JS)
    assert dot, "no dot found on the plot"
    box = plot.bounding_box()
    page.mouse.move(box["x"] + dot["x"], box["y"] + dot["y"])
    hover.wait_for(state="visible", timeout=5_000)
    thumbnail = pixels(widget.locator("canvas.cnnw-hover-image"))
    assert thumbnail["shown"] and thumbnail["colors"] >= 5, thumbnail  # a gray digit, not a blank square
    assert re.match(r"#\d+ · label \d · predicted \d", widget.locator(".cnnw-hover-text").inner_text())
    widget.screenshot(path=str(artifacts_dir / "embedding_scatter_hover.png"))
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    hover.wait_for(state="hidden", timeout=5_000)

    # scrolling zooms in: the plot changes
    before_zoom = pixels(plot)["hash"]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "([js, before]) => eval(js)(document.querySelector('.cnnw-embedding-scatter canvas.cnnw-plot')).hash !== before",
        arg=[CANVAS_PIXELS_JS, before_zoom], timeout=5_000,
    )
    plot.dblclick()  # back to the whole view
    page.wait_for_function(
        "([js, drawn]) => eval(js)(document.querySelector('.cnnw-embedding-scatter canvas.cnnw-plot')).hash === drawn",
        arg=[CANVAS_PIXELS_JS, drawn["hash"]], timeout=5_000,
    )

    # shift-drag a box around the dot hovered before (the view is back where it was): its images show below
    box = plot.bounding_box()
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + dot["x"] - 30, box["y"] + dot["y"] - 30)
    page.mouse.down()
    page.mouse.move(box["x"] + dot["x"] + 30, box["y"] + dot["y"] + 30, steps=8)
    page.mouse.up()
    page.keyboard.up("Shift")
    selected = widget.locator(".cnnw-selected canvas")
    selected.first.wait_for(state="visible", timeout=5_000)
    assert re.match(r"\d+ images selected", widget.locator(".cnnw-selected-info").inner_text())
    assert pixels(selected.first)["colors"] >= 3
    widget.screenshot(path=str(artifacts_dir / "embedding_scatter_selection.png"))

    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)


def test_lasso_selects_the_points_inside_it(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget, plot = show_pca_scatter(page, jupyter_server, "lasso_scatter.ipynb", LASSO_SOURCE, 1797, RENDER_TIMEOUT_MS)
    points = np.load(jupyter_server.root_dir / "lasso_points.npy").astype(np.float64)
    assert points.shape == (1797, 2)

    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = plot.bounding_box()
    # whole client pixels, so the pointer events carry exactly these coordinates
    centre = (round(box["x"] + box["width"] / 2), round(box["y"] + box["height"] / 2))
    client = [(centre[0] + dx, centre[1] + dy) for dx, dy in LASSO_U]
    draw_lasso(page, widget, client, steps=5)

    layout = to_layout(box, client)
    expected = np.flatnonzero(Polygon(layout).contains_points(points)).tolist()
    assert expected, "the lasso should enclose some digits"
    xs, ys = np.array(layout).T
    in_bounds = (points[:, 0] >= xs.min()) & (points[:, 0] <= xs.max()) & (points[:, 1] >= ys.min()) & (points[:, 1] <= ys.max())

    assert_selected(page, widget, expected, 5_000)
    widget.screenshot(path=str(artifacts_dir / "embedding_scatter_lasso.png"))
    # the notch holds digits: a box over the lasso's bounds would have selected more
    assert in_bounds.sum() > len(expected)

    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)


# A million synthetic points in ten clusters on a circle (a real million-image index would take hours to build):
# an Index made from its parts, with 4×4 thumbnails, so hover and the selection ask Python for their images.
MILLION = 1_000_000
MILLION_SOURCE = f"""import numpy as np, torch
import cnnwidgets
from cnnwidgets.backend.index import Index
rng = np.random.default_rng(0)
labels = np.arange({MILLION}) % 10
angles = labels / 10 * 2 * np.pi
codes = rng.normal(0, 0.3, ({MILLION}, 8)).astype(np.float32)
codes[:, 0] += 10 * np.cos(angles)
codes[:, 1] += 10 * np.sin(angles)
codes[:, :2] += rng.normal(0, 0.6, ({MILLION}, 2)).astype(np.float32)
tints = (np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                   [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]]) * 0.8).astype(np.uint8)
thumbnails = np.broadcast_to(tints[labels][:, None, None, :], ({MILLION}, 4, 4, 3)).copy()
thumbnails[:, 1:3, 1:3] = 255
index = Index({{"config": {{"layers": [], "k": 0, "codes": "synthetic"}}, "offset": 0, "count": {MILLION},
               "codes": torch.from_numpy(codes), "labels": torch.from_numpy(labels), "predictions": torch.from_numpy(labels),
               "label_names": [str(d) for d in range(10)], "class_names": [str(d) for d in range(10)],
               "thumbnails": torch.from_numpy(thumbnails)}})
scatter = cnnwidgets.EmbeddingScatter(index, method="pca")
np.save("million_points.npy", scatter.coordinates)
scatter"""
KNOWN_CLUSTER = 3
LASSO_VERTICES = 24


def test_a_million_points_lasso_selects_a_known_cluster(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    widget, plot = show_pca_scatter(page, jupyter_server, "million_scatter.ipynb", MILLION_SOURCE, MILLION, LAYOUT_TIMEOUT_MS)
    page.wait_for_timeout(500)
    points = np.load(jupyter_server.root_dir / "million_points.npy").astype(np.float64)
    labels = np.arange(MILLION) % 10
    assert points.shape == (MILLION, 2)
    assert pixels(plot)["colors"] >= 10  # the ten clusters drawn

    # hover a dot: its thumbnail comes from Python on request (a million are too many for one sprite sheet)
    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    dot = page.evaluate(FIND_DOT_JS)
    assert dot, "no dot found on the plot"
    box = plot.bounding_box()
    page.mouse.move(box["x"] + dot["x"], box["y"] + dot["y"])
    hover = widget.locator(".cnnw-hover")
    hover.wait_for(state="visible", timeout=5_000)
    page.wait_for_function(
        "() => !document.querySelector('.cnnw-embedding-scatter canvas.cnnw-hover-image').hidden", timeout=10_000)
    assert pixels(widget.locator("canvas.cnnw-hover-image"))["colors"] >= 2  # the tint and the white centre
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    hover.wait_for(state="hidden", timeout=5_000)

    # a lasso around cluster 3: a circle about its centre, halfway to the nearest other cluster, in whole client pixels
    centres = np.array([points[labels == c].mean(0) for c in range(10)])
    radius = 0.5 * min(np.linalg.norm(centres[c] - centres[KNOWN_CLUSTER]) for c in range(10) if c != KNOWN_CLUSTER)
    left, top, side = PLOT_SQUARE
    angles = np.arange(LASSO_VERTICES) / LASSO_VERTICES * 2 * np.pi
    ring = centres[KNOWN_CLUSTER] + radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    client = [(round(box["x"] + (x * side + left) * box["width"] / PLOT_SIZE[0]),
               round(box["y"] + (y * side + top) * box["height"] / PLOT_SIZE[1])) for x, y in ring]
    expected = np.flatnonzero(Polygon(to_layout(box, client)).contains_points(points))
    in_cluster = labels[expected] == KNOWN_CLUSTER
    assert in_cluster.mean() > 0.99 and in_cluster.sum() > 0.99 * (labels == KNOWN_CLUSTER).sum()

    draw_lasso(page, widget, client + client[:1])
    assert_selected(page, widget, expected.tolist(), 20_000)
    # their thumbnails come from Python on request: tinted squares with a white centre
    page.wait_for_function("() => document.querySelector('.cnnw-embedding-scatter .cnnw-selected canvas').width === 4",
                           timeout=10_000)
    assert pixels(widget.locator(".cnnw-selected canvas").first)["colors"] == 2
    widget.screenshot(path=str(artifacts_dir / "embedding_scatter_million_lasso.png"))

    # zooming still redraws (how fast is bench/scatter.py's to measure, not a test's)
    before_zoom = pixels(plot)["hash"]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "([js, before]) => eval(js)(document.querySelector('.cnnw-embedding-scatter canvas.cnnw-plot')).hash !== before",
        arg=[CANVAS_PIXELS_JS, before_zoom], timeout=5_000,
    )
    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)
