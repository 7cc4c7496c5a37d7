"""Binder's environment, built the way Binder builds it (a fresh environment from binder/'s files only), runs
every notebook within Binder's 2 GB memory limit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER_MEMORY_BYTES = 2 * 2**30
RUN_NOTEBOOKS = """
import sys, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3").execute()
    print("ran", path, flush=True)
"""


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (the kernel is a grandchild)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@pytest.fixture
def workdir(tmp_path):
    """A folder removed as soon as the test ends, passed or failed: Binder's environment holds PyTorch's CUDA
    build here (about 6 GB), and pytest would otherwise keep its last three runs' folders, enough to fill CI's
    disk (stop 24's CI run failed with "No space left on device" while installing it)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.skipif(shutil.which("npm") is None, reason="building cnnwidgets needs npm")
def test_binder_environment_runs_every_notebook_under_2gb(workdir):
    repo = workdir / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", "node_modules", ".git", "test-artifacts", "*.egg-info"))
    venv = workdir / "binder-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # PyTorch's CPU index (binder/requirements.txt) is out of reach here: fail over to PyPI at once instead of
    # retrying every package for seconds; Binder itself reaches that index and gets the CPU build
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "PIP_RETRIES": "0", "PIP_NO_CACHE_DIR": "1"}
    env.pop("PYTHONPATH", None)
    install = subprocess.run(["pip", "install", "-q", "-r", "binder/requirements.txt"], cwd=repo, env=env,
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    build = subprocess.run(["bash", "binder/postBuild"], cwd=repo, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]

    notebooks = sorted(str(p) for p in (repo / "notebooks").glob("*.ipynb"))
    start = time.monotonic()
    runner = subprocess.Popen(["python", "-c", RUN_NOTEBOOKS, *notebooks], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched = psutil.Process(runner.pid)
    peaks: dict[str, int] = {}  # notebook -> peak memory while it ran
    current = [Path(notebooks[0]).name]
    lines: list[str] = []

    def sample() -> None:
        while runner.poll() is None:
            peaks[current[0]] = max(peaks.get(current[0], 0), tree_rss(watched))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    assert runner.stdout is not None
    for line in runner.stdout:  # "ran PATH" after each notebook: the next one's peak starts
        lines.append(line)
        if line.startswith("ran ") and (following := notebooks.index(line[4:].strip()) + 1) < len(notebooks):
            current[0] = Path(notebooks[following]).name
    runner.wait(timeout=1800)
    sampler.join()
    elapsed = time.monotonic() - start
    peak = max(peaks.values(), default=0)
    each = ", ".join(f"{name} {value / 2**20:.0f}" for name, value in peaks.items())
    print(f"binder: {len(notebooks)} notebooks in {elapsed:.0f} s, peak memory {peak / 2**20:.0f} MiB ({each} MiB)")
    assert runner.returncode == 0, "".join(lines)[-3000:]
    assert peak < BINDER_MEMORY_BYTES, f"peak memory {peak / 2**20:.0f} MiB exceeds Binder's 2 GiB ({each} MiB)"
