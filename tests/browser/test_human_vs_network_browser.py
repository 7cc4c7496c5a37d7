"""HumanVsNetwork in a real JupyterLab: answering images from the shortlist updates the score panel with the
learner's accuracy (three right of four) and the network's, and the disagreements show side by side."""

from __future__ import annotations

import pytest

from .conftest import IGNORED_CONSOLE_ERRORS, open_notebook, run_cells, write_notebook

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SOURCE = """from cnnwidgets import zoo
from cnnwidgets.widgets.human_vs_network import HumanVsNetwork
game = HumanVsNetwork(zoo.digits_cnn(), zoo.digits("test"), count=6, seed=1)
print("truth", game.labels)
game"""


def test_human_vs_network_in_jupyterlab(jupyter_server, browser_page, artifacts_dir):
    page = browser_page
    open_notebook(page, jupyter_server, write_notebook(jupyter_server, "human_vs_network.ipynb", SOURCE))
    run_cells(page, 1)
    widget = page.locator(".cnnw-human-vs-network")
    widget.wait_for(state="visible", timeout=TIMEOUT_MS)
    printed = page.locator(".jp-OutputArea-output", has_text="truth").inner_text()
    truth = [int(v) for v in printed.split("[")[1].split("]")[0].split(",")]
    choices = widget.locator(".cnnw-hv-choice")
    choices.first.wait_for(state="visible", timeout=TIMEOUT_MS)

    # answer the first four images: right, wrong, right, right (each click moves to the next image)
    for slot, right in enumerate([True, False, True, True]):
        page.wait_for_function("(text) => document.querySelector('.cnnw-human-vs-network .cnnw-hv-progress')?.textContent.startsWith(text)",
                               arg=f"image {slot + 1} of 6", timeout=TIMEOUT_MS)
        names = choices.all_inner_texts()
        pick = str(truth[slot]) if right else next(name for name in names if name != str(truth[slot]))
        choices.nth(names.index(pick)).click()
    page.wait_for_function("() => (document.querySelector('.cnnw-human-vs-network .cnnw-hv-human-accuracy')?.textContent ?? '').startsWith('3 of 4')",
                           timeout=TIMEOUT_MS)
    assert "75.0 %" in widget.locator(".cnnw-hv-human-accuracy").inner_text()
    network = widget.locator(".cnnw-hv-network-accuracy").inner_text()
    assert network.startswith(("3 of 4", "4 of 4"))  # the digits CNN (98.6 % held out) misses at most the odd one
    if network.startswith("4 of 4"):
        assert widget.locator(".cnnw-hv-case").count() == 1  # the wrong answer, beside the network's right one
    assert not widget.locator(".cnnw-error").is_visible()
    widget.screenshot(path=str(artifacts_dir / "human_vs_network.png"))
    errors = [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]
    assert not errors, errors
