"""The widgets' one job runner: cancel-and-replace, errors kept out of the view, wait, a clean exit; and background
work that never shares the user's model with the main thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torchvision

from cnnwidgets import Inspector
from cnnwidgets.backend.preprocess import Preprocess
from cnnwidgets.methods import gradients
from cnnwidgets.widgets.activation_maximization import ActivationMaximization
from cnnwidgets.widgets.base import CnnWidget
from cnnwidgets.widgets.jobs import Job, Jobs

from tests.conftest import assert_same_state, hooks_left, model_state


class Counter(CnnWidget):
    """A bare widget to run jobs on (its front end is any built one)."""

    _esm = "export default { render() {} }"


def counting(log: list, name: str, steps: int, fail_at: int | None = None, delay: float = 0.0):
    def work(job: Job):
        for step in range(steps):
            time.sleep(delay)
            if step == fail_at:
                raise ValueError(f"{name} broke at {step}\nsecond line")
            log.append((name, step))
            yield (step + 1) / steps

    return work


@pytest.mark.parametrize("thread", [True, False])
def test_a_newer_job_replaces_the_running_one(thread):
    widget, log = Counter(), []
    jobs = Jobs(widget, thread=thread)

    async def scenario():
        jobs.start(counting(log, "old", 10_000, delay=0.001))
        await asyncio.sleep(0.05)
        jobs.start(counting(log, "new", 3))
        for _ in range(2000):
            await asyncio.sleep(0.001)
            if not jobs.running:
                break

    asyncio.run(scenario())
    jobs.wait(30)
    old = [step for name, step in log if name == "old"]
    assert len(old) < 10_000 and [step for name, step in log if name == "new"] == [0, 1, 2]
    assert log[-3:] == [("new", 0), ("new", 1), ("new", 2)]  # nothing of the old job after the new one started
    assert widget.progress == 1.0 and widget.busy is False and widget.error == ""


@pytest.mark.parametrize("thread", [True, False])
def test_an_error_is_shown_in_one_line_and_wait_can_raise_it(thread):
    widget, log = Counter(), []
    jobs = Jobs(widget, thread=thread, raise_in_wait=True)
    if thread:
        jobs.start(counting(log, "job", 5, fail_at=2))
        with pytest.raises(ValueError, match="broke at 2"):
            jobs.wait(30)
    else:
        with pytest.raises(ValueError, match="broke at 2"):  # outside an event loop the job runs at once
            jobs.start(counting(log, "job", 5, fail_at=2))
    assert widget.error == "job broke at 2" and log == [("job", 0), ("job", 1)]
    assert not jobs.running and widget.busy is False
    jobs.wait(1)  # raised once


def test_jobs_queued_behind_the_running_one_coalesce():
    widget, log = Counter(), []
    jobs = Jobs(widget, thread=True)
    jobs.start(counting(log, "first", 50))
    for name in ("a", "b", "c"):
        jobs.start(counting(log, name, 1), replace=False)
    jobs.wait(30)
    assert [step for name, step in log if name == "first"] == list(range(50))  # not cancelled
    assert [name for name, _ in log if name != "first"] == ["c"]  # only the newest waiting job ran


def test_wait_times_out_and_ends_the_rests():
    widget, log = Counter(), []
    jobs = Jobs(widget, thread=True, rest_share=0.01, rest_max_s=60.0)

    def slow(job: Job):
        for step in range(3):
            time.sleep(0.05)
            log.append(step)
            yield None

    jobs.start(slow)
    with pytest.raises(TimeoutError):
        jobs.wait(0.01)
    started = time.perf_counter()
    jobs.wait(30)  # without resting: three steps of 50 ms, not a 5 s rest after each
    assert log == [0, 1, 2] and time.perf_counter() - started < 5


def test_the_interpreter_exits_cleanly_while_an_optimization_runs(tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent("""
        import time, torch
        torch.set_num_threads(1)
        from tests.methods.test_maximize import small_inspector
        from cnnwidgets.widgets.activation_maximization import ActivationMaximization
        widget = ActivationMaximization(small_inspector(), "c1", size=32, steps=100000, every=1)
        widget.start()
        time.sleep(1.0)
        assert widget.running and widget.step > 0
        print("exiting")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting" in done.stdout and "terminate called" not in done.stderr


def test_background_optimization_never_touches_the_users_model():
    """The race of issue 13: a train-mode ResNet-18 optimized in the background while the main thread keeps
    asking for activations and saliency. Every answer equals the one computed alone, and the model is left as
    it came (weights, batch-norm statistics, training flags, hooks)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).train()
    inspector = Inspector(model, Preprocess(resize=48, crop=48), labels=[f"c{i}" for i in range(10)], cache_bytes=0)
    images = [torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    alone = [(inspector.activations(image, "layer2.1"), gradients.saliency(inspector, image, 3)) for image in images]
    before = model_state(model)

    widget = ActivationMaximization(inspector, "c1", size=48, every=1, steps=100_000)
    widget.start()
    try:
        deadline, checked = time.monotonic() + 6, 0
        while time.monotonic() < deadline or widget.step < 3:
            image = checked % len(images)
            activations = inspector.activations(images[image], "layer2.1")
            saliency = gradients.saliency(inspector, images[image], 3)
            torch.testing.assert_close(activations, alone[image][0], rtol=0, atol=0)
            torch.testing.assert_close(saliency, alone[image][1], rtol=0, atol=0)
            checked += 1
        assert widget.running and widget.error == ""
    finally:
        widget.stop()
    assert widget.step >= 3 and checked >= 3
    assert_same_state(before, model_state(model))
    assert all(module.training for module in model.modules())
    assert hooks_left(model) == 0
