"""Running batches in streams: in order, PyTorch's threads split and given back, errors raised once running items are done."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from cnnwidgets.backend.device import ordered_streams, split_threads


def test_ordered_streams_answer_in_order_while_later_items_run(two_threads):
    """Two items at once, each on a stream thread with one PyTorch thread, and a third queued: it starts as soon as
    a stream is free, before the caller took the first result. Results in the items' order although the first item
    is the slowest; a slot is reused only after the result of the item before it in that slot was taken; the thread
    count comes back."""
    events, taken = [], set()

    def work(slot, item):
        assert (item - 3) in taken or item < 3  # the item that held this slot before was answered
        events.append((slot, item, threading.current_thread().name.split("_")[0], torch.get_num_threads(), len(taken)))
        time.sleep(0.2 if item == 0 else 0.01)
        return item * 10

    results = []
    for result in ordered_streams(work, range(5), 2):
        results.append(result)
        taken.add(result // 10)
    assert results == [0, 10, 20, 30, 40]
    by_item = sorted(events, key=lambda e: e[1])
    assert [(slot, item) for slot, item, *_rest in by_item] == [(0, 0), (1, 1), (2, 2), (0, 3), (1, 4)]
    assert by_item[2][4] == 0  # the queued item ran while the slow first one still held its stream
    assert {name for _slot, _item, name, *_rest in events} == {"cnnwidgets-stream"}
    assert {threads for *_rest, threads, _taken in events} == {1} and torch.get_num_threads() == 2
    ran_here = [threading.current_thread().name for _ in ordered_streams(lambda slot, item: slot, range(3), 1)]
    assert ran_here == ["MainThread"] * 3


def test_ordered_streams_raise_a_failure_in_its_place_once_running_items_are_done(two_threads):
    """A failed item's error comes after the results before it and only once the items read beside it (the slow
    one running, the one queued) finished, so nothing outlives the iterator; the thread count is restored."""
    finished = []

    def work(_slot, item):
        if item == 1:
            raise ValueError("item 1 failed")
        time.sleep(0.2 if item == 2 else 0.0)
        finished.append(item)
        return item

    results = []
    with pytest.raises(ValueError, match="item 1 failed"):
        for result in ordered_streams(work, range(4), 2):
            results.append(result)
    assert results == [0] and sorted(finished) == [0, 2, 3] and torch.get_num_threads() == 2


def test_ordered_streams_answer_started_items_before_a_read_error(two_threads):
    """Reading the items fails (an interrupted data pipeline) while two run: both are answered, in order, then the
    read error is raised."""
    def items():
        yield from (0, 1)
        raise KeyboardInterrupt

    results = []
    with pytest.raises(KeyboardInterrupt):
        for result in ordered_streams(lambda _slot, item: time.sleep(0.05) or item, items(), 2):
            results.append(result)
    assert results == [0, 1] and torch.get_num_threads() == 2


def test_ordered_streams_left_early_wait_for_their_items_and_give_the_threads_back(two_threads):
    """A consumer that stops after the first result (a widget whose request was replaced) closes the iterator: the
    items read beside it (the slow one, the queued one) finish before the close returns, no other starts, and the
    thread count comes back."""
    finished = []

    def work(_slot, item):
        time.sleep(0.2 if item == 1 else 0.0)
        finished.append(item)
        return item

    results = ordered_streams(work, range(10), 2)
    assert next(results) == 0
    results.close()
    assert sorted(finished) == [0, 1, 2] and finished[-1] == 1 and torch.get_num_threads() == 2
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("cnnwidgets-stream")]


def test_split_threads_overlapping_blocks_restore_the_users_count(two_threads):
    """Two indexes built at once (two widgets) each divide the threads; the last one out restores the count the
    first one found, whatever the order they end in."""
    first, second = split_threads(2), split_threads(2)
    assert first.__enter__() == 1 and second.__enter__() == 1
    first.__exit__(None, None, None)
    assert torch.get_num_threads() == 1
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == 2
