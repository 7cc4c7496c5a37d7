"""Dataset index throughput as a ratio to a bare batched forward of the same model over the same DataLoader.

The bare forward is the fastest forward cnnwidgets has for class scores (the folded, channels-last copy, see
`backend.folded`) run over `DataLoader(dataset, batch_size, num_workers)`; the index is `inspector.index(loader)`
over that very loader with its defaults: the top-16 of every default layer (`default_layers`: the activation
layers, or a model's blocks and pools where its activations are functions), the codes (input of the last Linear),
32-px thumbnails and a content hash of every image. Both sides run in alternating rounds and the ratio is
that of their fastest rounds (a shared 2-core CPU is noisy; the slowest round says how noisy). Models: the
embedded EfficientNet-Lite0 at 224 px and timm architectures (random weights, offline) at 128 px; images are
random preprocessed tensors, so decoding costs nothing and the ratio shows the index's own overhead. 160 images
on the CPU (2,048 on a GPU): the index's per-image cost falls as the dataset grows past k (fewer maxima can still
enter a top-k, see `backend.index._maxima`), so a dataset of a few k images would show only its start.

Session 21 (two threads, 160 images at batch 4): Lite0 0.75, resnet50 0.89, efficientnet_b0 0.62,
mobilenetv3_large_100 0.61; at 4,000 images Lite0 0.82, mobilenetv3 0.62 (session 20: 0.65 / 0.78 / 0.57 / 0.55;
4,000 images 0.67 / 0.55), after compiled maximum-and-position searches (`backend/index/maxima.py`), the in-place
top-k merge (`backend/index/topk.py`) and per-weights memos of the folded-conv trace and the weights' fingerprint.
On the mobile models, replacing parts by stubs: hooks, hashes, thumbnails and codes 12-13 % of the bare forward,
each map's search about 15 %; a hook that holds the CPU for ~100 µs also slows the next convolutions (the OpenMP
worker sleeps and is woken: hooks that only sleep 100 µs made the forward itself 10 % slower). Tried without gain:
running the searches on a second thread (per map, or overlapping the next layers), block-wise `amax` followed by a
search in the winning block, a single selection over all layers with `_select` (the cost is in the data, not the
calls). On an H200 (batch 64, `bench/results/index_cuda.json`, before these changes): 0.53-0.67, limited by the
host's Python work per layer. Session 22, twelve matrix models (INDEX_BENCH_MODELS=efficientnet_lite0,resnet50,
efficientnet_b0,mobilenetv3_large_100,convnext_nano,densenet121,regnety_008,vgg11_bn,repvgg_a0,tv_resnet18,
tv_googlenet,tv_shufflenet_v2_x1_0): 0.63-0.95 after `topk.take_into` (0.59-0.95 before; ±0.03 between runs), ≥ 0.8 on vgg11_bn,
resnet50, convnext_nano, repvgg_a0 and torchvision resnet18. Session 23, all 27 matrix models
(INDEX_BENCH_MODELS=matrix INDEX_BENCH_ROUNDS=2, about 9 minutes): 0.82-1.49, Lite0 at 224 px 0.76, after the index
ran two batches at once on the CPU (`device.STREAMS`). `ratio_to_bare_two_streams` compares with the bare forward
run the same way (two batches at once, one PyTorch thread each): 0.51-0.98, the cost of the index's own work.
Session 25, all 27 (INDEX_BENCH_MODELS=matrix INDEX_BENCH_ROUNDS=2): 0.84-1.42, Lite0 0.87, after a third batch
was queued beside the two running (`device.ordered_streams`).
Session 27, all 27, on a faster 2-core machine (bare forwards 1.2-1.8x session 25's): 0.70-1.26, under 0.8 on
mnasnet0_5 0.70, mobilenetv3 0.77 and Lite0 0.78 (over 4,000 images, `index_4000_images.json`: 0.60 / 0.86 / 0.74;
bench/index.py --images 4000 --rounds 2 --models tv_mnasnet0_5 mobilenetv3_large_100 efficientnet_lite0): the
index's per-layer work (hooks, searches, their effect on the next convolutions) did not shrink with the forward.
After less Python in the hooks (`maxima.rows_of`, `group_of`): 0.71-1.42, under 0.8 on mnasnet0_5 0.71 and Lite0 0.79.
Session 28, all 27, on another 2-core machine (mnasnet0_5's bare forward 406 images/s against session 27's 492):
0.92-1.39, nothing under 0.8 (mnasnet0_5 0.92, convnext_nano 0.94, Lite0 0.96); over 4,000 images mnasnet0_5 1.09,
mobilenetv3 1.06, Lite0 0.90. Every run, and where the time goes: bench/HISTORY.md.

    .venv/bin/python bench/run.py index
    .venv/bin/python bench/index.py --device cuda --images 2048     # on a GPU (bench/gpu_check runs it too)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import time
from pathlib import Path

import torch
from common import machine

from cnnwidgets.backend.device import split_threads

TIMM_MODELS = ("resnet50", "efficientnet_b0", "mobilenetv3_large_100")
MATRIX_MODELS = (
    "efficientnet_lite0", "resnet50", "resnet18d", "seresnext26d_32x4d", "efficientnet_b0", "tf_efficientnet_b0",
    "mobilenetv3_large_100", "convnext_nano", "regnety_008", "densenet121", "inception_v3", "vgg11_bn", "repvgg_a0", "dla34",
    "ghostnet_100", "cspresnet50", "hrnet_w18_small", "mobilevit_xxs", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
    "tv_googlenet", "tv_squeezenet1_0", "tv_shufflenet_v2_x1_0", "tv_mnasnet0_5", "tv_alexnet", "tv_swin_t", "tv_resnet18")
"""The embedded Lite0 and the architectures of tests/methods/test_model_matrix.py (INDEX_BENCH_MODELS=matrix)."""
GOAL = 0.8
"""Issue 17: the index runs at ≥ 0.8× the bare batched forward."""


class Synthetic(torch.utils.data.Dataset):
    """`count` random preprocessed images of `shape` (made on the fly from the index, nothing kept), labels 0..9."""

    def __init__(self, count: int, shape: tuple[int, ...]) -> None:
        self.count, self.shape = count, shape

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.randn(self.shape, generator=torch.Generator().manual_seed(i)), i % 10


def inspectors(device: str, models: tuple[str, ...]) -> dict[str, tuple[object, int]]:
    """(Inspector, input side) by model name: the embedded Lite0 and timm architectures with random weights."""
    import timm

    from cnnwidgets import Inspector, zoo

    found = {}
    for name in models:
        if name == "efficientnet_lite0":
            found[name] = (zoo.efficientnet_lite0(device=device), 224)
        elif name.startswith("tv_"):  # a torchvision architecture, named as in tests/methods/test_model_matrix.py
            import torchvision

            found[name] = (Inspector(getattr(torchvision.models, name[3:])(weights=None).eval().to(device)), 128)
        else:  # timm's ViT and Swin take the size they were made for only
            found[name] = (Inspector(timm.create_model(name, pretrained=False).eval().to(device)),
                           224 if name.startswith(("vit_", "swin_")) else 128)
    return found


def throughput(inspector, side: int, images: int, batch_size: int, num_workers: int = 0, rounds: int = 3,
               amp: bool = False) -> dict:
    """Images per second of the bare forward and of the index over one DataLoader, and their ratio."""
    loader = torch.utils.data.DataLoader(Synthetic(images, (inspector.in_channels, side, side)), batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=inspector.device.type == "cuda")
    device = inspector.device
    example = next(iter(loader))[0].to(device)
    model = inspector.scoring_model(example, images=images)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else torch.autocast(device.type, enabled=False)

    def bare() -> None:
        with torch.inference_mode(), autocast:
            for batch, _labels in loader:
                model(batch.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare_two_streams() -> None:
        """The bare forward run as the index runs on the CPU: two batches at once, one PyTorch thread each."""
        with split_threads(2), concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda batch: forward(batch[0]), loader))

    def forward(batch: torch.Tensor) -> None:
        with torch.inference_mode():
            model(batch)

    def index() -> None:
        inspector.index(loader, progress=False, amp=amp)
        if device.type == "cuda":
            torch.cuda.synchronize()

    inspector.index(torch.utils.data.Subset(loader.dataset, range(batch_size)), progress=False, amp=amp)  # warm-up
    bare()
    runs = {"bare": bare, "index": index, **({"bare_two_streams": bare_two_streams} if device.type == "cpu" else {})}
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    best = {name: min(values) for name, values in times.items()}
    return {
        "images": images, "batch_size": batch_size, "num_workers": num_workers, "amp": amp,
        "layers": len(inspector.index(torch.utils.data.Subset(loader.dataset, range(1)), progress=False, thumbnails=0).layers),
        "bare_images_per_s": round(images / best["bare"], 1), "index_images_per_s": round(images / best["index"], 1),
        "ratio": round(best["bare"] / best["index"], 3),
        "ratio_slowest_rounds": round(max(times["bare"]) / max(times["index"]), 3),
        "ratio_cpu_time": round(min(cpu["bare"]) / min(cpu["index"]), 3),
        **({"ratio_to_bare_two_streams": round(best["bare_two_streams"] / best["index"], 3)} if "bare_two_streams" in best else {}),
    }


def run(device: str = "cpu", images: int | None = None, models: tuple[str, ...] | None = None, rounds: int | None = None) -> dict:
    """`bench/run.py index` takes INDEX_BENCH_MODELS (comma-separated; timm names, tv_<torchvision name>,
    efficientnet_lite0; or "matrix" for `MATRIX_MODELS`), INDEX_BENCH_IMAGES, INDEX_BENCH_ROUNDS and INDEX_BENCH_THREADS from the environment."""
    named = os.environ.get("INDEX_BENCH_MODELS", ",".join(("efficientnet_lite0", *TIMM_MODELS)))
    models = models or (MATRIX_MODELS if named == "matrix" else tuple(named.split(",")))
    images = images or (int(os.environ["INDEX_BENCH_IMAGES"]) if os.environ.get("INDEX_BENCH_IMAGES") else None)
    rounds = rounds or int(os.environ.get("INDEX_BENCH_ROUNDS", "3"))
    if os.environ.get("INDEX_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["INDEX_BENCH_THREADS"]))
    torch.manual_seed(0)
    cuda = device == "cuda"
    count = images or (2048 if cuda else 160)
    batch_size = 64 if cuda else 4
    results = {}
    for name, (inspector, side) in inspectors(device, models).items():
        results[name] = {"side": side, **throughput(inspector, side, count, batch_size, rounds=rounds)}
        if cuda:
            results[f"{name}_amp"] = {"side": side, **throughput(inspector, side, count, batch_size, rounds=rounds, amp=True)}
        row = results[name]
        print(f"{name:30s} index ×{row['ratio']:.2f} the bare forward (CPU time ×{row['ratio_cpu_time']:.2f}; "
              f"{row['index_images_per_s']} vs {row['bare_images_per_s']} images/s; "
              f"×{row.get('ratio_to_bare_two_streams', float('nan')):.2f} the bare forward in two streams)", flush=True)
    worst = min(result["ratio"] for result in results.values())
    return {"name": "index", "device": device, "goal_ratio": GOAL, "worst_ratio": worst, "models": results,
            "threads": torch.get_num_threads(), "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
            "machine": machine()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--models", nargs="*", default=None)
    arguments = parser.parse_args()
    result = run(arguments.device, arguments.images, tuple(arguments.models) if arguments.models else None, arguments.rounds)
    name = "index" if arguments.device == "cpu" else f"index_{arguments.device}"
    if arguments.device == "cpu" and arguments.images:  # a longer run sits beside the 160-image matrix, not over it
        name = f"index_{arguments.images}_images"
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
