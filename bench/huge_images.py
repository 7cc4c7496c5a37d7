"""Huge pictures: peak memory above the input and wall time of `images.to_pil` on a 12000×12000 JPEG file, PNG file
and uint8 array, against the plain way (Pillow decodes the whole picture, then `thumbnail`; for the array,
`Image.fromarray` then `thumbnail`), measured in the same run.

Each case runs in a fresh Python process; its peak is the largest resident size sampled every 2 ms during the call
minus the resident size just before it, with the input (the array, or nothing for a file) already in memory.
Writes `bench/results/huge_images.json`. Run: `python bench/huge_images.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
from common import machine

SIDE = 12000
CASE = """
import sys, threading, time, warnings
import numpy as np, PIL.Image, psutil
warnings.simplefilter("ignore")
PIL.Image.MAX_IMAGE_PIXELS = None
from cnnwidgets.backend.images import to_pil, MAX_SIDE
kind, how, path = sys.argv[1], sys.argv[2], sys.argv[3]
source = path
if kind == "array":
    source = np.zeros(({side}, {side}, 3), np.uint8)
    source[::7] = 200  # touch every page, so the input is resident before the call
process = psutil.Process()
rss = process.memory_info().rss
peak = [rss]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.002)
sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
if how == "cnnwidgets":
    out = to_pil(source, "RGB")
elif kind == "array":
    out = PIL.Image.fromarray(source)
    out.thumbnail((MAX_SIDE, MAX_SIDE))
else:
    out = PIL.Image.open(source).convert("RGB")
    out.thumbnail((MAX_SIDE, MAX_SIDE))
seconds = time.perf_counter() - start
done.set()
sampler.join()
print(seconds, max(0, peak[0] - rss), out.size[0], out.size[1])
""".replace("{side}", str(SIDE))


def _write_inputs(folder: Path) -> dict[str, Path]:
    """A smooth 12000×12000 RGB picture with some texture, saved as JPEG and PNG (fast settings)."""
    y, x = np.mgrid[0:SIDE:16, 0:SIDE:16]
    small = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    picture = PIL.Image.fromarray(small).resize((SIDE, SIDE), PIL.Image.NEAREST)
    paths = {"jpeg": folder / "huge.jpg", "png": folder / "huge.png"}
    picture.save(paths["jpeg"], quality=90)
    picture.save(paths["png"], compress_level=1)
    return paths


def _run(kind: str, how: str, path: Path | str) -> dict:
    root = Path(__file__).resolve().parents[1]
    output = subprocess.run([sys.executable, "-c", CASE, kind, how, str(path)], capture_output=True, text=True, check=True,
                            cwd=root, env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    seconds, peak, width, height = output.stdout.split()
    return {"seconds": round(float(seconds), 2), "peak_above_input_mb": round(int(peak) / 2**20), "size": [int(width), int(height)]}


def main() -> None:
    results: dict[str, object] = {"machine": machine(), "side": SIDE}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = _write_inputs(Path(folder))
        results["input_seconds"] = round(time.perf_counter() - start, 1)
        for kind in ("jpeg", "png", "array"):
            ours = _run(kind, "cnnwidgets", paths.get(kind, ""))
            plain = _run(kind, "plain", paths.get(kind, ""))
            results[kind] = {"cnnwidgets": ours, "plain": plain,
                             "memory_ratio": round(ours["peak_above_input_mb"] / max(1, plain["peak_above_input_mb"]), 3),
                             "time_ratio": round(ours["seconds"] / max(1e-3, plain["seconds"]), 3)}
            print(kind, results[kind], flush=True)
    out = Path(__file__).parent / "results" / "huge_images.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
