"""Dataset views: index building speed and memory, and 2-D embedding methods compared in one run.

- Index: images per second for the digits CNN on the 1,797 digits and for EfficientNet-Lite0 on 224×224 images
  (synthetic), on the CPU and on the GPU when there is one; resident memory while indexing 50,000 synthetic
  32×32 images (top-k only, then with codes), sampled every 5,000 images.
- Embedding: seconds and quality (5-NN accuracy of the class labels in 2-D, leave-one-out) of PCA, openTSNE,
  scikit-learn's TSNE and umap-learn in one run, on 1,797 digits codes and on 1,797 and 20,000 synthetic
  clustered 1,280-dim codes (PCA to 50 dims first, as `cnnwidgets.methods.embed` does); import times of
  openTSNE and umap-learn in fresh processes, and umap-learn's first fit (numba compiling) apart from the
  timed ones; then the fastest method whose layout is good (5-NN accuracy within 0.02 of the best) per size.
- The scatter's redraw, hover and lasso times (50,000 and 1,000,000 points) and layouts fitted on a sample then
  placed by transform: bench/scatter.py.

    .venv/bin/python bench/run.py dataset_views

The embedding comparison alone, on the digits only (about a minute): `embedding_methods(sizes=())`.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import torch

from common import machine

GOOD_ENOUGH = 0.02  # a layout is "good" when its 5-NN accuracy is within this of the best method's on that data


class Synthetic(torch.utils.data.Dataset):
    """`count` random preprocessed images of `shape`, made on the fly (nothing kept), with a label each."""

    def __init__(self, count: int, shape: tuple[int, ...]) -> None:
        self.count, self.shape = count, shape

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        generator = torch.Generator().manual_seed(i)
        return torch.randn(self.shape, generator=generator), i % 10


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def index_speed() -> dict:
    from cnnwidgets import zoo
    from cnnwidgets.backend.index import build_index
    from cnnwidgets.zoo.digits import digits, digits_cnn

    results = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        inspector = digits_cnn(device=device)
        data = digits()
        build_index(inspector, digits("test"), progress=False)  # warm-up
        start = time.perf_counter()
        build_index(inspector, data, progress=False)
        seconds = time.perf_counter() - start
        results[f"digits_cnn_{device}"] = {"images": len(data), "seconds": round(seconds, 2), "images_per_s": round(len(data) / seconds, 1)}

        lite0 = zoo.efficientnet_lite0(device=device)
        count = 64 if device == "cpu" else 1024
        images = Synthetic(count, (3, 224, 224))
        layers = ["_blocks.3._expand_act", "_blocks.6._expand_act", "_blocks.9._expand_act"]
        build_index(lite0, Synthetic(8, (3, 224, 224)), layers, progress=False)  # warm-up
        start = time.perf_counter()
        build_index(lite0, images, layers, progress=False)
        seconds = time.perf_counter() - start
        results[f"efficientnet_lite0_{device}"] = {"images": count, "layers": len(layers), "seconds": round(seconds, 2),
                                                   "images_per_s": round(count / seconds, 1)}
    return results


def index_memory(count: int = 50_000) -> dict:
    from cnnwidgets.backend.index import build_index
    from cnnwidgets.zoo.digits import digits_cnn

    inspector = digits_cnn()
    results = {}
    for name, options in {"top_k_only": {"codes": None, "thumbnails": 0}, "with_codes_and_thumbnails": {}}.items():
        samples = []

        class Watched(Synthetic):
            def __getitem__(self, i: int):
                if i % 5000 == 0:
                    samples.append(round(_rss_mb(), 1))
                return super().__getitem__(i)

        start = time.perf_counter()
        index = build_index(inspector, Watched(count, (1, 32, 32)), progress=False, **options)
        seconds = time.perf_counter() - start
        samples.append(round(_rss_mb(), 1))
        results[name] = {"images": count, "seconds": round(seconds, 1), "images_per_s": round(count / seconds, 1),
                         "rss_mb_every_5000": samples, "rss_growth_mb": round(samples[-1] - samples[1], 1),
                         "index_mb": round(_index_bytes(index) / 2**20, 2)}
    return results


def _index_bytes(index) -> int:
    state = index.state_dict()
    total = sum(t.numel() * t.element_size() for key in ("hashes", "labels", "predictions", "confidences", "codes", "thumbnails")
                if (t := state[key]) is not None)
    return total + sum(t.numel() * t.element_size() for parts in state["top"].values() for t in parts.values())


def _clusters(count: int, dims: int = 1280, classes: int = 10, seed: int = 0, noise: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Clustered codes like a CNN's penultimate layer: non-negative, class means apart, per-image noise."""
    rng = np.random.default_rng(seed)
    centers = rng.gamma(1.0, 1.0, (classes, dims)).astype(np.float32)
    labels = rng.integers(0, classes, count)
    codes = np.maximum(centers[labels] + rng.normal(0, noise, (count, dims)).astype(np.float32), 0)
    return codes, labels


def _knn_accuracy(layout: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(layout).kneighbors(layout, return_distance=False)[:, 1:]
    votes = labels[neighbours]
    predicted = np.array([np.bincount(row, minlength=labels.max() + 1).argmax() for row in votes])
    return float((predicted == labels).mean())


def _import_seconds(module: str) -> float:
    """Seconds `import module` takes in a fresh Python process (what a user waits for the first time)."""
    import subprocess
    import sys

    script = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return round(float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout), 2)


def embedding_methods(sizes: tuple[int, ...] = (1797, 20000)) -> dict:
    from cnnwidgets.backend.index import build_index
    from cnnwidgets.methods.embed import pca, tsne, umap
    from cnnwidgets.zoo.digits import digits, digits_cnn

    if importlib.util.find_spec("umap") is None:
        raise RuntimeError("the embedding comparison needs umap-learn: pip install -r requirements-dev.txt")
    results: dict[str, dict] = {}
    started = time.perf_counter()
    results["imports_s"] = {"openTSNE": _import_seconds("openTSNE"), "umap": _import_seconds("umap")}
    index = build_index(digits_cnn(), digits(), ["relu3"], progress=False)
    datasets = {"digits_1797x64": (index.codes.numpy(), index.labels.numpy())}
    for size in sizes:
        datasets[f"synthetic_{size}x1280"] = _clusters(size)
    # umap-learn compiles its numba kernels on the first fit in a process: time that apart, once
    start = time.perf_counter()
    umap(_clusters(500, 64)[0])
    results["umap_first_fit_500x64_s"] = round(time.perf_counter() - start, 2)
    methods = {"pca": lambda c: pca(c, 2), "openTSNE": lambda c: tsne(c, backend="openTSNE"),
               "sklearn_TSNE": lambda c: tsne(c, backend="scikit-learn"), "umap": umap}
    fastest_good = {}
    for name, (codes, labels) in datasets.items():
        row = {}
        for method, run in methods.items():
            start = time.perf_counter()
            layout = run(codes)
            seconds = time.perf_counter() - start
            row[method] = {"seconds": round(seconds, 2), "knn5_accuracy": round(_knn_accuracy(layout, labels), 4)}
        results[name] = row
        nonlinear = {method: row[method] for method in methods if method != "pca"}
        best = max(entry["knn5_accuracy"] for entry in nonlinear.values())
        good = [method for method, entry in nonlinear.items() if entry["knn5_accuracy"] >= best - GOOD_ENOUGH]
        fastest_good[name] = min(good, key=lambda method: nonlinear[method]["seconds"])
    results["fastest_good"] = fastest_good
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results


def _default_method(embedding: dict) -> str:
    """What the numbers say the default should be, at the largest size: the fastest good layout once its library
    is loaded, and the fastest good first layout of a session (import, and umap-learn's compiling, included)."""
    largest = list(embedding["fastest_good"])[-1]  # the data sets in order of size
    row = embedding[largest]
    startup = {"openTSNE": embedding["imports_s"]["openTSNE"], "sklearn_TSNE": 0.0,  # loaded already, for PCA
               "umap": embedding["imports_s"]["umap"] + embedding["umap_first_fit_500x64_s"]}
    best = max(row[method]["knn5_accuracy"] for method in startup)
    good = [method for method in startup if row[method]["knn5_accuracy"] >= best - GOOD_ENOUGH]
    first = min(good, key=lambda method: startup[method] + row[method]["seconds"])
    later = embedding["fastest_good"][largest]
    names = {"openTSNE": "tsne (openTSNE)", "sklearn_TSNE": "tsne (scikit-learn)", "umap": "umap"}
    return (f"{largest}: fastest good first layout of a session {names[first]} "
            f"({startup[first] + row[first]['seconds']:.1f} s with its import), fastest good later {names[later]} "
            f"({row[later]['seconds']} s)")


def run() -> dict:
    torch.manual_seed(0)
    index_results = {"index_speed": index_speed(), "index_memory": index_memory()}
    embedding = embedding_methods()
    return {
        "name": "dataset_views",
        **index_results,
        "embedding": embedding,
        "default_method": _default_method(embedding),
        "machine": machine(),
    }
