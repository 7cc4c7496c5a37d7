"""Browser fixtures: a throwaway JupyterLab server and headless Chromium driven by Playwright.

The server runs on copies of the notebooks in a temporary root dir (JupyterLab autosaves, and the repo's
notebooks must stay as committed), with the current Python's environment, so its `python3` kernel is this
venv and imports this checkout of cnnwidgets. Screenshots go to test-artifacts/ at the repo root.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT_S = 90
KERNEL_TIMEOUT_MS = 120_000  # kernel start + import torch + model load + first forward pass

# JupyterLab user settings for the test server: no news or update checks (no network here, and their
# notifications would cover part of the page in screenshots).
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/browser/ is a browser test (`-m "not browser"` skips them all)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = "install Chromium: apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class JupyterServer:
    base_url: str  # http://127.0.0.1:PORT
    token: str
    root_dir: Path  # holds the copied notebooks

    def lab_url(self, notebook: str) -> str:
        """The notebook in a JupyterLab workspace of its own (reset), so notebooks opened by earlier tests on this
        server are not restored beside it in hidden tabs, where their cells would match the tests' selectors."""
        stem = Path(notebook).stem
        return f"{self.base_url}/lab/workspaces/{stem}/tree/{notebook}?token={self.token}&reset"

    def notebook7_url(self, notebook: str) -> str:
        """The same notebook in Jupyter Notebook 7's interface (served by the same server)."""
        return f"{self.base_url}/notebooks/{notebook}?token={self.token}"


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer {url} within {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and everything it started (kernels) by killing its own process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
    # kernels run in the same process group; make sure none outlives the server
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def notebooks_to_serve() -> list[Path]:
    """The notebooks the server gets copies of; override in a test module to serve others."""
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory, notebooks_to_serve: list[Path]):
    _require_chromium()
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    for notebook in notebooks_to_serve:
        shutil.copy2(notebook, root / notebook.name)
    settings = base / "user-settings"
    for relative, values in QUIET_SETTINGS.items():
        path = settings / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("JUPYTER_CONFIG_DIR", None)

    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyter.log"
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--ServerApp.port_retries=0",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{base_url}/api?token={token}", process, log)
        yield JupyterServer(base_url=base_url, token=token, root_dir=root)
    finally:
        _stop(process)


@pytest.fixture(autouse=True)
def _shut_down_kernels(jupyter_server: JupyterServer):
    """After each test, stop the kernels it started: each holds a model, and the server lives for the session."""
    yield
    api = f"{jupyter_server.base_url}/api/kernels"
    headers = {"Authorization": f"token {jupyter_server.token}"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=headers), timeout=10) as answer:
        kernels = json.loads(answer.read())
    for kernel in kernels:
        request = urllib.request.Request(f"{api}/{kernel['id']}", headers=headers, method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture(scope="module")
def _chromium():
    """Chromium for one test module: Playwright's sync API keeps an asyncio loop running in this thread while it
    lives, which later (non-browser) tests must not see."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(_chromium):
    """A fresh page (own context, so own storage); `page.console_errors` collects console errors and page errors."""
    context = _chromium.new_context(viewport={"width": 1400, "height": 1600})  # tall enough for the whole widget
    page = context.new_page()
    errors: list[str] = []

    def on_console(message) -> None:
        if message.type == "error":
            location = message.location or {}
            errors.append(f"console: {message.text} ({location.get('url', '')}:{location.get('lineNumber', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error} {(error.stack or '').splitlines()[1:3]}"))
    page.console_errors = errors
    try:
        yield page
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------- helpers

# Console errors that are JupyterLab's own and say nothing about the widget (this machine is offline):
# failed fetches of the news feed, the update check and the extension manager's PyPI listing.
IGNORED_CONSOLE_ERRORS = re.compile(r"/lab/api/news|/lab/api/update|/lab/api/extensions|pypi\.org")

# Pixels of a canvas: size, a hash of the RGBA bytes, how many distinct colours, and whether it is shown.
CANVAS_PIXELS_JS = """(canvas) => {
    const { width, height } = canvas;
    const shown = !canvas.hidden && canvas.offsetWidth > 0;
    if (!width || !height) return { width, height, hash: 0, colors: 0, shown };
    const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
    let hash = 2166136261;
    const colors = new Set();
    for (let i = 0; i < data.length; i += 4) {
        const rgba = (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3];
        hash = Math.imul(hash ^ rgba, 16777619) >>> 0;
        if (colors.size < 10000) colors.add(rgba);
    }
    return { width, height, hash, colors: colors.size, shown };
}"""


def canvas_pixels(locator) -> dict:
    """Size, pixel hash, colour count and visibility of the canvas `locator` points at."""
    return locator.evaluate(CANVAS_PIXELS_JS)



def write_notebook(server: JupyterServer, name: str, *sources: str) -> str:
    """Write a notebook with one code cell per source into the server's folder; returns its name."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(notebook, server.root_dir / name)
    return name


def share_kernel(server: JupyterServer, notebook: str, with_notebook: str) -> None:
    """Start `notebook`'s session on the kernel `with_notebook` runs, so opening it finds a warm kernel (its
    imports and variables) instead of starting one: a kernel start costs ~20-40 s here (torch, the model)."""
    api = f"{server.base_url}/api/sessions"
    headers = {"Authorization": f"token {server.token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=headers), timeout=10) as answer:
        kernel = next(session["kernel"]["id"] for session in json.loads(answer.read()) if session["path"] == with_notebook)
    body = json.dumps({"path": notebook, "name": notebook, "type": "notebook", "kernel": {"id": kernel}}).encode()
    urllib.request.urlopen(urllib.request.Request(api, data=body, headers=headers, method="POST"), timeout=30).close()


def open_notebook(page, server: JupyterServer, notebook: str, timeout_ms: int = KERNEL_TIMEOUT_MS,
                  notebook7: bool = False) -> None:
    """Open `notebook` in JupyterLab (or Notebook 7), accept a kernel dialog if one shows, and wait for its cells."""
    page.goto(server.notebook7_url(notebook) if notebook7 else server.lab_url(notebook))
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible", timeout=timeout_ms)
    _accept_kernel_dialog(page, wait_ms=3000)


def _accept_kernel_dialog(page, wait_ms: int) -> None:
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        dialog.wait_for(state="visible", timeout=wait_ms)
    except Exception:  # no dialog: the notebook's kernelspec started directly
        return
    dialog.click()


def wait_kernel_idle(page, timeout_ms: int = KERNEL_TIMEOUT_MS) -> None:
    """Wait until the notebook's kernel is idle: execution indicator idle and no cell waiting ([*])."""
    page.wait_for_function(
        """() => {
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            if (!panel) return false;
            const prompts = [...panel.querySelectorAll('.jp-InputArea-prompt')].map((p) => p.textContent);
            if (prompts.some((text) => text.includes('*'))) return false;
            const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
            return !indicator || !indicator.dataset.status || indicator.dataset.status === 'idle';
        }""",
        timeout=timeout_ms,
        polling=250,
    )


def run_cells(page, count: int | None = None, timeout_ms: int = KERNEL_TIMEOUT_MS, start: int = 0) -> None:
    """Run `count` cells (all the rest when None) from cell `start` on, in order with Shift+Enter, then wait for
    the kernel.

    Fails if any of those cells raised (an error output) so a broken notebook reads as such.
    """
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    total = cells.count()
    count = total - start if count is None else min(count, total - start)
    # enter the notebook in command mode on the first cell to run: click its prompt area, then Escape
    cells.nth(start).locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Escape")
    for _ in range(count):
        page.keyboard.press("Shift+Enter")
    # each code cell among them must have been given an execution number
    page.wait_for_function(
        """([start, count]) => {
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].slice(start, start + count);
            return cells.filter((c) => c.classList.contains('jp-CodeCell'))
                .every((c) => /\\[\\d+\\]/.test(c.querySelector('.jp-InputArea-prompt')?.textContent ?? ''));
        }""",
        arg=[start, count],
        timeout=timeout_ms,
        polling=250,
    )
    wait_kernel_idle(page, timeout_ms)
    tracebacks = [
        text for index in range(start, start + count)
        for text in cells.nth(index).locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        if re.search(r"Traceback|Error", text)
    ]
    assert not tracebacks, "a notebook cell raised:\n" + "\n".join(tracebacks)


def run_all_cells(page, timeout_ms: int = KERNEL_TIMEOUT_MS) -> None:
    run_cells(page, None, timeout_ms)


def show_widget(page, server: JupyterServer, notebook: str, source: str, root: str, timeout_ms: int = KERNEL_TIMEOUT_MS):
    """Write `source` as the one-cell `notebook`, open it, run it and wait until the widget `root` (a CSS selector)
    shows; returns the widget's locator."""
    open_notebook(page, server, write_notebook(server, notebook, source))
    run_cells(page, 1, timeout_ms)
    widget = page.locator(root)
    widget.wait_for(state="visible", timeout=timeout_ms)
    return widget


def console_errors(page) -> list[str]:
    """The page's console errors and page errors, less JupyterLab's own (IGNORED_CONSOLE_ERRORS)."""
    return [error for error in page.console_errors if not IGNORED_CONSOLE_ERRORS.search(error)]


# Wait until the `index`-th canvas matching `selector` is shown with at least `minColors` colours and, if given,
# pixels other than `notHash`.
WAIT_CANVAS_JS = """([selector, index, minColors, notHash]) => {
    const canvas = document.querySelectorAll(selector)[index];
    if (!canvas || canvas.hidden || !canvas.width || !canvas.height) return false;
    const pixels = (%s)(canvas);
    return pixels.colors >= minColors && (notHash === null || pixels.hash !== notHash);
}""" % CANVAS_PIXELS_JS


def wait_canvas(page, selector: str, min_colors: int = 2, not_hash: int | None = None, timeout: int = KERNEL_TIMEOUT_MS,
                index: int = 0) -> dict:
    """Wait until canvas `selector` (its `index`-th match) shows at least `min_colors` colours and, if given, pixels
    other than `not_hash`; returns its pixels (canvas_pixels)."""
    page.wait_for_function(WAIT_CANVAS_JS, arg=[selector, index, min_colors, not_hash], timeout=timeout, polling=200)
    return canvas_pixels(page.locator(selector).nth(index))


# NetworkMap of EfficientNet-Lite0 (tests/browser/test_network_map_browser.py, test_notebook9_browser.py): collapsed,
# Lite0 is a chain (input, _conv_stem, _bn0, _stem_act, _blocks, _conv_head, …) with unit i on rank i.
NETWORK_MAP_BOX_PITCH = 64  # js/src/shared/graph.js: box height 40 + rank gap 24; margin 12
STEM_ACT_RANK, BLOCKS_RANK = 3, 4
LITE0_PARAMETERS = "4,652,008 parameters"


def network_map_box(rank: int) -> dict:
    """A point inside the box on `rank` of a NetworkMap's canvas, for `click(position=...)`."""
    return {"x": 60, "y": 12 + rank * NETWORK_MAP_BOX_PITCH + 20}


def wait_network_map(page, timeout_ms: int = KERNEL_TIMEOUT_MS):
    """Wait until the page's NetworkMap of Lite0 has drawn its graph and totals; returns the widget's locator."""
    network = page.locator(".cnnw-network-map")
    network.wait_for(state="visible", timeout=timeout_ms)
    page.wait_for_function("() => document.querySelector('.cnnw-network-map canvas.cnnw-nm-canvas')?.height > 500",
                           timeout=timeout_ms)
    assert LITE0_PARAMETERS in network.inner_text()
    return network


def expand_blocks(network, timeout_ms: int = KERNEL_TIMEOUT_MS) -> None:
    """Click the map's `_blocks` box: its 16 MBConv blocks replace it (a chip names the opened block)."""
    network.locator("canvas.cnnw-nm-canvas").click(position=network_map_box(BLOCKS_RANK))
    network.locator(".cnnw-nm-chip", has_text="_blocks").wait_for(timeout=timeout_ms)
