"""FeatureEvolution on the digits CNN: a new epoch's panels (16 features), the epoch slider on the Python side,
and how much a snapshot every epoch slows the user's own training loop (goal: at most ~10 %). A snapshot only
copies the weights; its panels are computed by a background thread that rests most of the time, so the bench also reports the
synchronous cost of one snapshot call, how long the view needs after training to show every epoch, and how long
`wait()` takes after a snapshot while other processes keep both cores busy."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import machine, median_ms

EPOCHS = 5
ROUNDS = 5


def train(model, x, y, epochs, after_epoch) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for `epochs` epochs of Adam on (x, y), calling `after_epoch(epoch)`
    after each one. The CPU seconds include the widget's background thread while training runs; other processes
    on a loaded machine inflate the wall time but hardly the CPU time, so the CPU ratio is the steadier figure."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).split(32):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after_epoch(epoch)
    return time.perf_counter() - start, time.process_time() - cpu_start


def timed(call: Callable[[int], None], seconds: list[float]) -> Callable[[int], None]:
    """`call`, appending the seconds each call takes to `seconds`."""

    def wrapper(epoch: int) -> None:
        start = time.perf_counter()
        call(epoch)
        seconds.append(time.perf_counter() - start)

    return wrapper


def loaded_wait_s(features, test) -> float:
    """Seconds from a snapshot to `wait()` returning while two other processes keep both cores busy (at nice 19
    the background thread starved here and `wait(60)` timed out)."""
    from cnnwidgets import FeatureEvolution, Inspector
    from cnnwidgets.zoo.digits import DigitsCNN, digits_transform

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        live = FeatureEvolution.track(Inspector(DigitsCNN(), digits_transform()), test, features=features)
        start = time.perf_counter()
        live.snapshot(0)
        live.wait(120)
        return time.perf_counter() - start
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def run() -> dict:
    from cnnwidgets import FeatureEvolution, Inspector, zoo
    from cnnwidgets.zoo.digits import DigitsCNN, digits_transform

    test = zoo.digits("test")
    features = [("relu1", c) for c in range(5)] + [("relu2", c) for c in range(5)] + [("relu3", c) for c in range(6)]
    widget = FeatureEvolution(features=features)
    state = torch.load(zoo.checkpoint_path(10), map_location="cpu", weights_only=True)
    count = iter(range(100, 10**6))
    new_epoch_ms = median_ms(lambda: widget.add_checkpoint(next(count), state), repeats=5, warmup=1)
    epochs = widget.epochs
    step = iter(range(10**6))
    slider_ms = median_ms(lambda: setattr(widget, "epoch", epochs[next(step) % len(epochs)]), repeats=50)

    x, y = zoo.digits("train").tensors()
    load_before = os.getloadavg()
    plain, tracked, snapshot_s, catch_up = [], [], [], []
    for _ in range(ROUNDS):  # alternated, so a load change on the machine hits both alike
        torch.manual_seed(0)
        plain.append(train(DigitsCNN(), x, y, EPOCHS, lambda epoch: None))
        torch.manual_seed(0)
        model = DigitsCNN()
        live = FeatureEvolution.track(Inspector(model, digits_transform()), test, features=features)
        tracked.append(train(model, x, y, EPOCHS, timed(live.snapshot, snapshot_s)))
        start = time.perf_counter()
        live.wait()  # not part of the training loop: the view catching up once training is over
        catch_up.append(time.perf_counter() - start)
        assert live.epochs == list(range(1, EPOCHS + 1))
    plain_s, tracked_s = statistics.median(w for w, _ in plain), statistics.median(w for w, _ in tracked)
    plain_cpu, tracked_cpu = statistics.median(c for _, c in plain), statistics.median(c for _, c in tracked)
    load_after = os.getloadavg()
    ratios = [t[0] / p[0] for p, t in zip(plain, tracked)]  # each tracked run against the plain run just before it
    loaded_s = loaded_wait_s(features, test)
    return {
        "name": "feature_evolution",
        "model": "digits CNN, 256 held-out digits sampled, 32×32",
        "new_epoch_panels_ms": round(new_epoch_ms, 1),
        "features": len(features),
        "epoch_slider_python_ms": round(slider_ms, 3),
        "epoch_slider_note": "the browser holds every epoch's data and redraws without a message to Python; "
                             "this is the Python side of the trait change, which runs no forward pass",
        "training_5_epochs_s": round(plain_s, 2),
        "training_5_epochs_with_snapshot_each_epoch_s": round(tracked_s, 2),
        "snapshot_slowdown": round(tracked_s / plain_s - 1, 3),
        "snapshot_slowdown_note": f"median of {ROUNDS} alternated runs of each, in one run of the bench",
        "snapshot_slowdown_per_pair": [round(r - 1, 3) for r in ratios],
        "training_cpu_s": round(plain_cpu, 2),
        "training_with_snapshots_cpu_s": round(tracked_cpu, 2),
        "snapshot_cpu_overhead": round(tracked_cpu / plain_cpu - 1, 3),
        "snapshot_cpu_overhead_note": "CPU seconds of the process (training + the background panels while training "
                                      "runs), median of the same runs: the cost that a loaded machine does not blur",
        "load_average_1_5_15_min_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_min_after": [round(v, 2) for v in load_after],
        "load_note": "the machine is shared (2 cores, other agents' tests running): the ratio of alternated runs "
                     "is the figure to read, not the seconds",
        "snapshot_call_ms": round(1000 * statistics.median(snapshot_s), 3),
        "panels_ready_after_training_s": round(statistics.median(catch_up), 2),
        "wait_after_one_snapshot_with_both_cores_busy_s": round(loaded_s, 2),
        "machine": machine(),
    }
