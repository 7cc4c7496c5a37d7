"""The one way a widget runs work that takes long: a `Jobs` runner per widget.

A job is a generator function `work(job)` that does one small piece of work per `next()` and may yield a progress
fraction (0..1, or None); long steps look at `job.cancelled` inside. `jobs.start(work)` runs it and cancels the job it replaces: a newer request always wins,
so an old answer is never published after a newer one. A widget publishes only finished, good state from inside
its job, so when a step raises, the job stops, `error` shows the first line of the reason and the last good view
stays. `progress` (a synced trait of every widget) follows the fractions; `busy` is true while a job runs.

Where the steps run (`thread=`):

* **thread** (ActivationMaximization, CodeInversion, FeatureEvolution): one worker thread per runner. The work
  must not touch the user's model: it runs on `inspector.private_copy()`, made for the widget (the model is never
  shared across threads; see `Inspector.private_copy` for why a copy and not a lock). `rest_share` keeps a
  background job to at most that share of the time (FeatureEvolution's live tracking beside a training loop);
  `wait()` ends the rests, so the remaining steps run at full speed.
* **event loop** (OcclusionSlider; NetworkMap's statistics and receptive fields): chunks of at most CHUNK_S on the
  kernel's asyncio loop, in the main thread, so the kernel answers the browser between chunks and the user's own
  model may be used. Outside a running loop (a script, a test) the job runs to the end at once.

`wait(timeout)` blocks until no job is left (a TimeoutError after `timeout` s); `finish()` runs what is left now,
in the caller. At interpreter exit every runner cancels its job and joins its thread, so no thread is still inside
torch while the interpreter shuts down (which aborted with "terminate called without an active exception").

Requests from the browser follow one protocol (see `cnnwidgets.widgets.base`): a request that needs Python work
carries an id, the answer echoes it, the front end keeps only the newest.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from .base import one_line

if TYPE_CHECKING:
    from .base import CnnWidget

CHUNK_S = 0.05
"""On the event loop, a job runs steps for at most this long before letting the kernel answer messages (a drag
readout waits at most one chunk)."""
EXIT_JOIN_S = 10.0
"""At interpreter exit, how long to wait for each worker thread to leave its current step."""

Steps = Generator[float | None, None, None]

_RUNNERS: weakref.WeakSet[Jobs] = weakref.WeakSet()


class Job:
    """One run of a job: its steps, whether it was cancelled, and whether it ended."""

    def __init__(self, work: Callable[[Job], Steps]) -> None:
        self.cancelled = threading.Event()
        self.ended = threading.Event()
        self.failure: BaseException | None = None
        self.steps = work(self)

    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    def cancel(self) -> None:
        self.cancelled.set()


class Jobs:
    """The runner of one widget's long work: start (replacing the running job), cancel, wait, finish.

    `thread=True` runs the steps in a worker thread, else in chunks on the kernel's event loop. `rest_share` (thread
    only): after each step, rest so that steps take at most this share of the time (at most `rest_max_s` s), until
    `wait()` is called. `raise_in_wait`: `wait()` raises the error that stopped the last job (else it is only shown).
    """

    def __init__(self, widget: CnnWidget, *, thread: bool, rest_share: float = 1.0, rest_max_s: float = 0.0,
                 raise_in_wait: bool = False) -> None:
        self._widget = weakref.ref(widget)
        self.thread = thread
        self.rest_share, self.rest_max_s = rest_share, rest_max_s
        self.raise_in_wait = raise_in_wait
        self._lock = threading.RLock()
        self._current: Job | None = None  # running (or scheduled on the loop)
        self._next: Job | None = None  # thread mode: a replacing job, runs once the current one has left its step
        self._pending: Job | None = None  # thread mode: the newest waiting job, runs after `_next` and the current one
        self._worker: threading.Thread | None = None
        self._hurry = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        _RUNNERS.add(self)

    # --- starting and stopping ------------------------------------------------------------------------------------

    def start(self, work: Callable[[Job], Steps], *, replace: bool = True) -> Job:
        """Run `work(job)`. With `replace` the running job is cancelled (a newer request wins); without, it runs after
        the running job ends (coalescing: of several such waiting jobs only the newest runs)."""
        job = Job(work)
        with self._lock:
            self._failure = None
            if replace:
                self._cancel_locked()
            if self.thread:
                if replace:
                    self._next = job
                else:
                    if self._pending is not None:
                        self._pending.cancel()
                        self._pending.ended.set()
                    self._pending = job
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name=f"cnnwidgets-{self._name()}", daemon=True)
                    self._worker.start()
            else:
                if not replace and self._current is not None:
                    self._finish_locked()
                self._current = job
        self._set_busy(True)
        if not self.thread:
            self._schedule(job)
        return job

    def cancel(self) -> None:
        """Stop the running job after its current step (and drop a waiting one)."""
        with self._lock:
            self._cancel_locked()
        if not self.running:
            self._set_busy(False)

    def _cancel_locked(self) -> None:
        for job in (self._current, self._next, self._pending):
            if job is not None:
                job.cancel()
        for waiting in (self._next, self._pending):
            if waiting is not None:
                waiting.ended.set()
        self._next = self._pending = None
        if not self.thread:
            self._current = None

    @property
    def running(self) -> bool:
        with self._lock:
            current = self._current is not None and not self._current.ended.is_set()
            return current or self._next is not None or self._pending is not None

    def wait(self, timeout: float | None = None) -> None:
        """Block until no job is left (TimeoutError after `timeout` s). On the event loop this runs the rest now."""
        if not self.thread:
            self.finish()
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            self._hurry.set()
            try:
                while True:
                    with self._lock:
                        worker = self._worker
                    if worker is None or worker is threading.current_thread():
                        break
                    worker.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
                    if worker.is_alive():
                        raise TimeoutError(f"{self._name()} is still working after {timeout} s")
            finally:
                self._hurry.clear()
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None and self.raise_in_wait:
            raise failure

    def finish(self, timeout: float | None = None) -> None:
        """Run what is left of the current job now, in the caller (event-loop mode; in thread mode: `wait(timeout)`)."""
        if self.thread:
            self.wait(timeout)
            return
        with self._lock:
            self._finish_locked()

    def _finish_locked(self) -> None:
        job, self._current = self._current, None
        if job is None or job.ended.is_set():
            return
        job.cancel()  # a chunk still scheduled on the loop must not continue it
        try:
            for fraction in job.steps:
                self._set_progress(fraction)
        except Exception as error:
            self._fail(job, error)
            self._failure = None  # raised to the caller here, so not again by wait()
            raise
        finally:
            job.ended.set()
            self._set_busy(False)
        self._set_progress(1.0)

    def stop_at_exit(self) -> None:
        """Cancel the job and join the worker: nothing of this runner is inside torch once this returns."""
        self.cancel()
        self._hurry.set()
        with self._lock:
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(EXIT_JOIN_S)

    # --- the worker thread ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                job: Job | None
                if self._next is not None:
                    job, self._next = self._next, None
                else:
                    job, self._pending = self._pending, None
                self._current = job
                if job is None:
                    self._worker = None
                    return
            self._run(job)
            self._set_busy(False)

    def _run(self, job: Job) -> None:
        try:
            while not job.cancelled.is_set():
                started = time.perf_counter()
                try:
                    fraction = next(job.steps)
                except StopIteration:
                    self._set_progress(1.0)
                    break
                self._set_progress(fraction)
                if self.rest_share < 1.0 and not self._hurry.is_set():
                    spent = time.perf_counter() - started
                    self._hurry.wait(min(spent * (1 / self.rest_share - 1), self.rest_max_s))
        except Exception as error:  # noqa: BLE001 - shown in the widget; the last good view stays
            self._fail(job, error)
        finally:
            job.steps.close()
            job.ended.set()

    # --- the event loop ---------------------------------------------------------------------------------------------

    def _schedule(self, job: Job) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if self._loop is None:
            with self._lock:
                if self._current is job:
                    self._finish_locked()
        else:
            self._loop.call_soon(self._chunk, job)

    def _chunk(self, job: Job) -> None:
        if job.cancelled.is_set() or job.ended.is_set():
            return  # replaced by a newer job, or finished by finish()
        started = time.perf_counter()
        try:
            while time.perf_counter() - started < CHUNK_S:
                self._set_progress(next(job.steps))
        except StopIteration:
            self._end_chunked(job)
            self._set_progress(1.0)
            return
        except Exception as error:  # noqa: BLE001 - shown in the widget; the last good view stays
            self._fail(job, error)
            self._end_chunked(job)
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(self._chunk, job)

    def _end_chunked(self, job: Job) -> None:
        job.ended.set()
        with self._lock:
            if self._current is job:
                self._current = None
        self._set_busy(False)

    # --- reporting to the widget --------------------------------------------------------------------------------------

    def _fail(self, job: Job, error: BaseException) -> None:
        job.failure = error
        with self._lock:
            self._failure = error
        widget = self._widget()
        if widget is not None:
            widget.error = one_line(error)

    def _set_progress(self, fraction: float | None) -> None:
        widget = self._widget()
        if widget is not None and fraction is not None:
            widget.progress = float(fraction)

    def _set_busy(self, busy: bool) -> None:
        widget = self._widget()
        if widget is not None:
            widget.busy = busy

    def _name(self) -> str:
        widget = self._widget()
        return type(widget).__name__ if widget is not None else "widget"


@atexit.register
def _stop_all() -> None:
    """Leave no worker thread inside torch while the interpreter shuts down."""
    for runner in list(_RUNNERS):
        runner.stop_at_exit()
