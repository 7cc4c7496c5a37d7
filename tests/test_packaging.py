"""The built wheel carries the bundled front end, so `pip install .` gives working widgets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_the_built_front_end(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("cnnwidgets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for widget in ("layer_explorer", "feature_evolution", "top_activations", "embedding_scatter", "saliency_overlay",
                   "occlusion_slider", "activation_maximization", "code_inversion", "invariance_probe", "adversarial_explorer",
                   "network_map", "correspondence_explorer", "attribute_slices", "human_vs_network"):
        assert f"cnnwidgets/static/{widget}.js" in names
    assert "cnnwidgets/zoo/data/digits_cnn.pt" in names and "cnnwidgets/zoo/data/digits_cnn.json" in names
    for weights in ("digits_generator.pt", "motion_two_stream.pt", "motion_c3d.pt", "motion.json"):
        assert f"cnnwidgets/zoo/data/{weights}" in names
    assert "cnnwidgets/py.typed" in names and "cnnwidgets/zoo/efficientnet_lite0.py" in names
    bundle = zipfile.ZipFile(wheel).read("cnnwidgets/static/layer_explorer.js").decode()
    assert "export" in bundle and "import " not in bundle.split("\n", 1)[0]  # one self-contained ES module
