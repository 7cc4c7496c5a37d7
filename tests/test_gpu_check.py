"""bench/gpu_check's dry run: the script that proves the GPU path must keep working where no GPU is (CPU against
CPU on the digits CNN), so that it runs the day a CUDA machine is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_dry_run_passes_every_check(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check"), "--device", "cpu", "--quick", "--repeats", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["passed"] and not report["failed"]
    assert len(report["checks"]) >= 20 and len(report["widgets"]) >= 15
    assert all(result["models_untouched"] for result in report["widgets"].values())
    against_captum = report["occlusion_against_captum"]["digits CNN"]  # bench/occlusion.py's comparison, on the device
    assert against_captum["positions"] == 49 and against_captum["max_abs_difference_vs_captum"] <= 1e-5
