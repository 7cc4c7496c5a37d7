"""Running batches in streams: PyTorch's threads split and given back, tasks' errors raised once all are done."""

from __future__ import annotations

import time

import pytest
import torch

from cnnwidgets.backend.device import run_streams, split_threads


def test_run_streams_raises_a_tasks_error_once_every_task_is_done(two_threads):
    """A failing task (on this thread or the other) raises its error only after the other task finished, so no
    task outlives the call; results come back in order; the thread count is restored."""
    finished = []

    def slow():
        time.sleep(0.2)
        finished.append("slow")
        return 1

    def failing():
        raise ValueError("task failed")

    assert run_streams([lambda: 0, slow]) == [0, 1]
    for tasks in ([failing, slow], [slow, failing]):
        finished.clear()
        with pytest.raises(ValueError, match="task failed"):
            run_streams(tasks)
        assert finished == ["slow"] and torch.get_num_threads() == 2


def test_split_threads_overlapping_blocks_restore_the_users_count(two_threads):
    """Two indexes built at once (two widgets) each divide the threads; the last one out restores the count the
    first one found, whatever the order they end in."""
    first, second = split_threads(2), split_threads(2)
    assert first.__enter__() == 1 and second.__enter__() == 1
    first.__exit__(None, None, None)
    assert torch.get_num_threads() == 1
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == 2
