"""TopActivations in a real JupyterLab: the crops render, clicking one shows its whole image, pickers redraw."""

from __future__ import annotations

import re

import pytest

from .conftest import CANVAS_PIXELS_JS, IGNORED_CONSOLE_ERRORS, open_notebook, run_cells

pytestmark = pytest.mark.browser

NOTEBOOK = "02_top_images_and_embeddings.ipynb"
CELLS = 9  # up to `top = cnnwidgets.TopActivations(index, "relu3", 5)`
RENDER_TIMEOUT_MS = 60_000
UPDATE_TIMEOUT_MS = 30_000
ROOT = ".cnnw-top-activations"



def pixels(locator) -> dict:
    return locator.evaluate(CANVAS_PIXELS_JS)


def wait_full_image(page, not_hash: int | None) -> dict:
    page.wait_for_function(
        """([pixelsJs, notHash]) => {
            const canvas = document.querySelector('.cnnw-top-activations canvas.cnnw-full');
            if (!canvas || canvas.hidden || !canvas.width) return false;
            const p = eval(pixelsJs)(canvas);
            return p.colors >= 8 && (notHash === null || p.hash !== notHash);
        }""",
        arg=[CANVAS_PIXELS_JS, not_hash], timeout=UPDATE_TIMEOUT_MS, polling=100,
    )
    return pixels(page.locator(f"{ROOT} canvas.cnnw-full"))


def wait_crop(page, not_hash: int) -> dict:
    """The first crop's pixels once they differ from `not_hash`."""
    page.wait_for_function(
        """([pixelsJs, notHash]) => {
            const canvas = document.querySelector('.cnnw-top-activations figure canvas');
            return canvas && eval(pixelsJs)(canvas).hash !== notHash;
        }""",
        arg=[CANVAS_PIXELS_JS, not_hash], timeout=UPDATE_TIMEOUT_MS, polling=100,
    )
    return pixels(page.locator(f"{ROOT} figure canvas").first)


def test_top_activations_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_cells(page, CELLS)

    widget = page.locator(ROOT)
    crops = widget.locator("figure")
    crops.first.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    assert widget.count() == 1
    assert crops.count() == 16
    assert "relu3, channel 5: top 16 images" in widget.locator(".cnnw-field").inner_text()
    assert "receptive field 18×18" in widget.locator(".cnnw-field").inner_text()
    first_crop = pixels(crops.first.locator("canvas"))
    assert first_crop["colors"] >= 4 and first_crop["width"] == 96  # a real crop, drawn at 96 px
    values = [float(text) for text in widget.locator(".cnnw-value").all_inner_texts()]
    assert values == sorted(values, reverse=True)  # best first

    # the deconvnet overlay: the kernel sends each crop's projection, drawn over the image; the opacity redraws
    # in the browser alone
    widget.locator("select.cnnw-show").select_option("overlay")
    overlay = wait_crop(page, first_crop["hash"])
    assert "max-pool switches" in widget.locator(".cnnw-projection-note").inner_text()
    widget.locator("input.cnnw-opacity").evaluate("(el) => { el.value = '1'; el.dispatchEvent(new Event('input')); }")
    projection = wait_crop(page, overlay["hash"])
    widget.locator("select.cnnw-show").select_option("image")
    wait_crop(page, projection["hash"])
    assert pixels(crops.first.locator("canvas"))["hash"] == first_crop["hash"]

    # nothing enlarged yet
    full = widget.locator("canvas.cnnw-full")
    assert not pixels(full)["shown"]
    assert "click a crop" in widget.locator(".cnnw-full-info").inner_text()

    # click crop 2: the kernel sends its whole image, drawn with the field outlined
    crops.nth(2).locator("canvas").click()
    second = wait_full_image(page, None)
    assert second["width"] > 200
    info = widget.locator(".cnnw-full-info").inner_text()
    assert re.match(r"image #\d+: activation \S+ at unit \(\d+, \d+\)", info), info
    assert "cnnw-selected" in (crops.nth(2).get_attribute("class") or "")
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(artifacts_dir / "top_activations.png"))

    # another crop: other pixels
    crops.nth(9).locator("canvas").click()
    wait_full_image(page, second["hash"])

    # the next channel: new crops, the enlarged view closes
    caption_before = widget.locator(".cnnw-field").inner_text()
    widget.locator("button.cnnw-next").click()
    page.wait_for_function(
        "() => (document.querySelector('.cnnw-top-activations .cnnw-field')?.textContent ?? '').startsWith('relu3, channel 6:')",
        timeout=UPDATE_TIMEOUT_MS,
    )
    assert widget.locator(".cnnw-field").inner_text() != caption_before
    assert widget.locator("input.cnnw-channel-input").input_value() == "6"

    # a random neuron: the caption names another (layer, channel)
    widget.locator("button.cnnw-random").click()
    page.wait_for_function(
        "() => !(document.querySelector('.cnnw-top-activations .cnnw-field')?.textContent ?? '').startsWith('relu3, channel 6:')"
        " && document.querySelector('.cnnw-top-activations .cnnw-computing')?.hidden",
        timeout=UPDATE_TIMEOUT_MS,
    )
    assert widget.locator("figure").count() == 16

    assert not widget.locator(".cnnw-error").is_visible(), widget.locator(".cnnw-error").inner_text()
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, "console errors:\n" + "\n".join(errors)
