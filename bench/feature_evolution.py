"""FeatureEvolution on the digits CNN: a new epoch's panels (16 features), the epoch slider on the Python side,
and how much a snapshot every epoch slows the user's own training loop (goal: at most ~10 %). A snapshot only
copies the weights; its panels are computed by a background thread that rests most of the time, so the bench also reports the
synchronous cost of one snapshot call, how long the view needs after training to show every epoch, and how long
`wait()` takes after a snapshot while other processes keep both cores busy."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import machine, median_ms

EPOCHS = 5
ROUNDS = 3


def train(model, x, y, epochs, after_epoch) -> float:
    """Seconds for `epochs` epochs of Adam on (x, y), calling `after_epoch(epoch)` after each one."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).split(32):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after_epoch(epoch)
    return time.perf_counter() - start


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
    plain_s, tracked_s = statistics.median(plain), statistics.median(tracked)
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
        "snapshot_slowdown_note": f"median of {ROUNDS} alternated runs of each",
        "snapshot_call_ms": round(1000 * statistics.median(snapshot_s), 3),
        "panels_ready_after_training_s": round(statistics.median(catch_up), 2),
        "wait_after_one_snapshot_with_both_cores_busy_s": round(loaded_s, 2),
        "machine": machine(),
    }
