"""Admission and concurrency for generations: at most N running, M waiting, the rest refused.

The model runs in a pool of N worker threads so the event loop never blocks. A request is first
*admitted* (a cheap count: refused with `Busy` when N + M requests are already in), then waits for
one of N *slots*; a slot is held exactly as long as its worker thread runs, whatever happens to the
HTTP side, so a cancelled request frees its slot only once the model has actually stopped.
Requests are not batched: each generation runs alone in its thread (the model API has no batched
generation yet), N > 1 only overlaps them.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


RECENT = 5  # finished generations Retry-After looks back on


class Busy(Exception):
    """Too many requests in: answer 503 and suggest when to retry."""

    def __init__(self, retry_after: int):
        super().__init__("server busy")
        self.retry_after = retry_after


class Scheduler:
    def __init__(self, max_concurrency: int = 1, max_queue: int = 8):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.admitted = 0  # requests between admit() and release(): waiting + running
        self.running = 0  # worker threads busy with a generation
        self._slots: asyncio.Semaphore | None = None  # made lazily inside the serving loop
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="aurora-generate")
        self._cancels: set[threading.Event] = set()
        self._recent: deque[float] = deque(maxlen=RECENT)  # seconds of the last generations
        self._started: dict[int, float] = {}  # running generation -> when it started (monotonic)

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    def admit(self) -> "Ticket":
        if self.admitted >= self.max_concurrency + self.max_queue:
            waves = math.ceil((self.admitted + 1) / self.max_concurrency)
            raise Busy(retry_after=max(1, min(60, math.ceil(waves * self.current_latency()))))
        self.admitted += 1
        return Ticket(self)

    def shutdown(self) -> None:
        """Stop every running generation at its next token and stop taking work."""
        for event in list(self._cancels):
            event.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def current_latency(self, now: float | None = None) -> float:
        """Seconds a generation takes now: the median of the last few finished ones, or of how long
        the running ones have run so far when that is longer (generations running for 30 s say the
        latency is at least that, whatever the earlier ones took). 1 s before anything has run."""
        now = time.monotonic() if now is None else now
        finished = statistics.median(self._recent) if self._recent else 1.0
        running = [now - started for started in self._started.values()]
        return max(finished, statistics.median(running)) if running else finished

    def _record(self, seconds: float) -> None:
        self._recent.append(seconds)


class Ticket:
    """One admitted request: `run` waits for a slot, then runs `work` in a worker thread."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.released = False

    async def run(self, work: Callable[[], object], cancel: threading.Event) -> "asyncio.Future":
        """Wait for a free slot, then start `work` in a worker; returns the (awaitable) future.

        Cancelling the wait gives up the place in the queue; once started, `work` runs to its end
        (set `cancel` to make the model stop at its next token).
        """
        scheduler = self.scheduler
        if scheduler._slots is None:
            scheduler._slots = asyncio.Semaphore(scheduler.max_concurrency)
        slots = scheduler._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        scheduler.running += 1
        scheduler._cancels.add(cancel)
        started = loop.time()
        scheduler._started[id(self)] = time.monotonic()

        def finished(_: Future) -> None:  # in the worker thread: hand back to the loop
            try:
                loop.call_soon_threadsafe(done)
            except RuntimeError:  # the loop is gone (server stopped): nothing left to account
                pass

        def done() -> None:
            scheduler.running -= 1
            scheduler._cancels.discard(cancel)
            scheduler._started.pop(id(self), None)
            scheduler._record(loop.time() - started)
            slots.release()

        try:
            future = scheduler._executor.submit(work)
        except RuntimeError:  # shutting down
            done()
            raise
        future.add_done_callback(finished)
        return asyncio.wrap_future(future)

    def release(self) -> None:
        """Leave the admitted count; call once the request's work (if any) has finished."""
        if not self.released:
            self.released = True
            self.scheduler.admitted -= 1
