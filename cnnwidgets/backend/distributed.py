"""The dataset index on Ray: shards built by workers, merged exactly.

`index_on_ray` (also `inspector.index(dataset, engine="ray")`) cuts a map-style dataset into shards of whole
batches. Ray actors — one per GPU, or one per `cpus_per_worker` CPUs — each rebuild the model from a constructor
and the state dict (a pickled module would carry its hooks and break across library versions), build the index of
one shard at a time with that shard's `offset`, and `Index.merge` combines them. Every batch holds the same images
as in one process, so the result is the single-process index with the same batch size, bit for bit (top ids,
values, positions, codes, predictions), where the workers run the same kernels (same device type and threads).

Scheduling and fault tolerance are Ray's: a `ray.util.ActorPool` hands out shards; an actor whose process dies is
restarted and its shard retried (`max_restarts`, `max_task_retries`). With no Ray running, a local one is started
for the call and stopped after; `address=` joins an existing cluster (`ray.init(address=...)`), as does a Ray the
caller started. On a cluster, every node needs cnnwidgets and the dataset's files at the same path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InputError
from .index import Index, Source, build_index
from .index.builder import _auto_batch_size
from .index.datasets import _preprocessed
from .inspector import Inspector

SHARDS_PER_WORKER = 4
"""Default shards per worker: progress and retries come in quarters of a worker's share, and the per-shard setup
(weights fingerprint, fold check: well under a second) stays small next to a shard of ImageNet."""
RETRIES = 3
"""How often a shard is retried after its worker died."""


class Shard(torch.utils.data.Dataset):
    """Items `start`…`stop` − 1 of a dataset (anything `inspector.index` takes that has random access), with its
    class names."""

    def __init__(self, dataset: object, start: int, stop: int) -> None:
        self.source = Source(dataset)
        self.start, self.stop = start, stop
        self.classes = self.source.classes

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, position: int) -> tuple[object, int | None]:
        if not 0 <= position < len(self):
            raise IndexError(position)
        return self.source.item(self.start + position)


class ShardBuilder:
    """A Ray actor's state: the model rebuilt once from its constructor and weights, and the dataset."""

    def __init__(self, model_fn: Callable[[], nn.Module], state: dict, transform: Callable, labels: list[str] | None,
                 dataset: object, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        model = model_fn()
        model.load_state_dict(state, strict=True)
        self.inspector = Inspector(model, transform, labels, device=device)
        self.dataset = dataset

    def build(self, start: int, stop: int, options: dict) -> dict:
        """The state of the index of items start…stop − 1 (ids from `start`)."""
        return build_index(self.inspector, Shard(self.dataset, start, stop), offset=start, progress=False, **options).state_dict()


def _checked_constructor(inspector: Inspector, model_fn: Callable[[], nn.Module] | None) -> Callable[[], nn.Module]:
    """`model_fn` (default: the model's class called without arguments) once it builds a model that takes the
    inspector's weights exactly."""
    constructor = model_fn if model_fn is not None else type(inspector.model)
    hint = ("pass model_fn=, a function without arguments that builds the architecture, e.g. "
            "functools.partial(timm.create_model, 'resnet50', pretrained=False)")
    try:
        candidate = constructor()
        candidate.load_state_dict(inspector.model.state_dict(), strict=True)
    except Exception as error:  # noqa: BLE001 - any failure means the workers could not rebuild the model
        raise InputError(f"the workers cannot rebuild the model with {getattr(constructor, '__name__', constructor)!r} "
                         f"({str(error).splitlines()[0][:160]}); {hint}") from None
    if not isinstance(candidate, nn.Module):
        raise InputError(f"model_fn returned a {type(candidate).__name__}, not a torch module; {hint}")
    return constructor


def shard_bounds(count: int, shards: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of `shards` consecutive shards covering range(count), each a whole number of batches."""
    size = math.ceil(math.ceil(count / shards) / batch_size) * batch_size
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def index_on_ray(
    inspector: Inspector,
    dataset: object,
    layers: Sequence[str] | None = None,
    *,
    model_fn: Callable[[], nn.Module] | None = None,
    workers: int | None = None,
    shards: int | None = None,
    cpus_per_worker: int = 1,
    gpus_per_worker: float | None = None,
    address: str | None = None,
    progress: bool = True,
    **options: object,
) -> Index:
    """The index of `dataset` (see `build_index`; its options k, codes, thumbnails, batch_size, num_workers, amp
    pass through) built on Ray and merged: equal to `build_index(inspector, dataset, layers, ...)`.

    `dataset` must have random access (a map-style Dataset, a folder, a list, a tensor, or a DataLoader over one),
    pickleable, and readable on every node. `model_fn`: builds the architecture on the workers (default the model's
    class without arguments); they load the inspector's weights into it. `workers`: default one per GPU of the
    cluster (`gpus_per_worker` GPUs each, default 1), else one per `cpus_per_worker` CPUs. `shards`: default
    SHARDS_PER_WORKER per worker. `address`: a cluster to join when Ray is not running yet.
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise InputError("engine='ray' needs Ray; pip install 'cnnwidgets[ray]'") from None
    for name in ("offset", "path", "save_every"):
        if name in options:
            raise InputError(f"{name}= is not for a Ray index (shards get their offsets; save the merged index with .save)")
    batch_size: Any = options.pop("batch_size", None)
    if isinstance(dataset, torch.utils.data.DataLoader):
        batch_size = batch_size or dataset.batch_size
        dataset = dataset.dataset
    source = Source(dataset)
    count = source.length  # None for an iterable dataset
    if not source.random_access or count is None:
        raise InputError("a Ray index needs a dataset with random access to cut into shards; pass a map-style Dataset")
    if count == 0:
        raise InputError("the dataset is empty; pass one with at least one image")
    constructor = _checked_constructor(inspector, model_fn)

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        cluster = ray.cluster_resources()
        gpus_each = gpus_per_worker if gpus_per_worker is not None else (1.0 if cluster.get("GPU", 0) else 0.0)
        if workers is None:
            workers = max(1, int(cluster["GPU"] / gpus_each if gpus_each else cluster.get("CPU", 1) // cpus_per_worker))
        device = "cuda" if gpus_each else "cpu"
        shape = tuple(_preprocessed(inspector, source.item(0)[0], None, "cpu")[0].shape)
        batch_size = int(batch_size or _auto_batch_size(torch.device(device), shape))
        bounds = shard_bounds(count, shards or workers * SHARDS_PER_WORKER, batch_size)
        options = {"layers": None if layers is None else list(layers), "batch_size": batch_size, **options}

        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_each, max_restarts=RETRIES,
                           max_task_retries=RETRIES)(ShardBuilder)
        state = ray.put({key: value.detach().cpu() for key, value in inspector.model.state_dict().items()})
        data = ray.put(dataset)
        pool = ActorPool([
            actor.remote(constructor, state, inspector.transform, inspector.labels, data, device, cpus_per_worker)
            for _ in range(min(workers, len(bounds)))
        ])
        parts = []
        with tqdm(total=count, desc=f"indexing on {min(workers, len(bounds))} Ray workers", unit="img", disable=not progress) as bar:
            for part in pool.map_unordered(lambda builder, bound: builder.build.remote(*bound, options), bounds):
                parts.append(Index(part))
                bar.update(len(parts[-1]))
    finally:
        if started:
            ray.shutdown()
    index = Index.merge(parts)
    index.inspector, index.source = inspector, source
    return index
