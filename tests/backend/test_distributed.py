"""The index on Ray (a real local cluster): shards on several workers merge into exactly the single-process index,
also when a worker dies mid-shard and Ray retries it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnwidgets import Inspector
from cnnwidgets.backend.index import build_index
from cnnwidgets.backend.distributed import index_on_ray, shard_bounds
from cnnwidgets.errors import InputError
from cnnwidgets.zoo import digits, digits_cnn

from tests.conftest import hooks_left
from tests.backend.test_index import assert_same_index

ray = pytest.importorskip("ray")

IMAGES = 192
BATCH = 16
ROOT = Path(__file__).resolve().parents[2]


class Watched(torch.utils.data.Dataset):
    """The first IMAGES digits; records which processes read them, and kills the reading process at item `die_at`
    while the file `flag` exists (deleting it first, so only the first attempt dies)."""

    def __init__(self, folder: Path, die_at: int | None = None) -> None:
        self.data = digits()
        self.folder, self.die_at = folder, die_at
        self.flag = folder / "die-once"

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, position: int):
        (self.folder / f"pid-{os.getpid()}").touch()
        if position == self.die_at and self.flag.exists():
            self.flag.unlink()
            os._exit(1)
        return self.data[position]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray with 2 CPUs for the module (starting one takes many seconds on 2 cores), or the cluster that
    RAY_ADDRESS names (`ray start --head --num-cpus=2`); its workers import this checkout."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    local = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": 2, "include_dashboard": False}
    ray.init(**local, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process index with the workers' settings (one thread, the same batch size)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_index(digits_cnn(), Watched(tmp_path_factory.mktemp("single")), batch_size=BATCH, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_shards_hold_whole_batches():
    assert shard_bounds(100, 3, 16) == [(0, 48), (48, 96), (96, 100)]
    assert shard_bounds(10, 4, 16) == [(0, 10)]


def test_ray_index_equals_single_process_index(cluster, single, tmp_path):
    inspector = digits_cnn()
    index = inspector.index(Watched(tmp_path), engine="ray", batch_size=BATCH, shards=4, workers=2, progress=False)
    assert_same_index(index, single)
    readers = {path.name for path in tmp_path.glob("pid-*")} - {f"pid-{os.getpid()}"}
    assert len(readers) >= 2  # two worker processes (not this one) read the images
    assert index.top("relu3", 0) == single.top("relu3", 0) and len(index) == IMAGES
    assert hooks_left(inspector.model) == 0


def test_a_worker_killed_mid_shard_is_retried_and_the_index_is_exact(cluster, single, tmp_path):
    dataset = Watched(tmp_path, die_at=IMAGES // 2 + 3)
    dataset.flag.touch()
    index = index_on_ray(digits_cnn(), dataset, batch_size=BATCH, shards=3, workers=2, progress=False)
    assert not dataset.flag.exists()  # the worker did die once
    assert_same_index(index, single)


def test_a_model_the_workers_cannot_rebuild_is_refused_before_ray_starts():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 8, 8))
    with pytest.raises(InputError, match="model_fn="):
        index_on_ray(Inspector(nn.Sequential(model)), torch.zeros(4, 1, 8, 8), model_fn=lambda: nn.Sequential(), progress=False)
