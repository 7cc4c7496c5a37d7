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



def write_notebook(server: JupyterServer, name: str, source: str) -> str:
    """Write a one-cell notebook running `source` into the server's folder; returns its name."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(notebook, server.root_dir / name)
    return name


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


def run_cells(page, count: int | None = None, timeout_ms: int = KERNEL_TIMEOUT_MS) -> None:
    """Run the first `count` cells (all when None) in order with Shift+Enter, then wait for the kernel.

    Fails if any of those cells raised (an error output) so a broken notebook reads as such.
    """
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    total = cells.count()
    count = total if count is None else min(count, total)
    # enter the notebook in command mode on the first cell: click its prompt area, then Escape
    cells.first.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Escape")
    for _ in range(count):
        page.keyboard.press("Shift+Enter")
    # each code cell among them must have been given an execution number
    page.wait_for_function(
        """(count) => {
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].slice(0, count);
            return cells.filter((c) => c.classList.contains('jp-CodeCell'))
                .every((c) => /\\[\\d+\\]/.test(c.querySelector('.jp-InputArea-prompt')?.textContent ?? ''));
        }""",
        arg=count,
        timeout=timeout_ms,
        polling=250,
    )
    wait_kernel_idle(page, timeout_ms)
    tracebacks = [
        text for index in range(count)
        for text in cells.nth(index).locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        if re.search(r"Traceback|Error", text)
    ]
    assert not tracebacks, "a notebook cell raised:\n" + "\n".join(tracebacks)


def run_all_cells(page, timeout_ms: int = KERNEL_TIMEOUT_MS) -> None:
    run_cells(page, None, timeout_ms)
