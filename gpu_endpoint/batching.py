"""One batch for many concurrent requests: on a GPU a graph run costs about the same for 1 chip as
for 64, so chips that arrive within a few milliseconds of each other, from different request threads,
go through the graph together.

``SharedBatches(run, wait_s, max_items)`` is called like ``run``: a caller's items wait up to
``wait_s`` for other callers' (or until ``max_items`` are queued), one worker thread runs them all in
one call, and each caller gets its own rows back. An error in that call is every waiting caller's
error; the worker goes on. The engine turns it on per embedder part with ``batch_wait_ms``
(``FACE_ENGINE_BATCH_WAIT_MS`` in the server); off, each request runs its own batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np


class _Job:
    def __init__(self, items: np.ndarray):
        self.items = items
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class SharedBatches:
    """Runs the items of concurrent calls together: a call waits up to ``wait_s`` for others, and a
    batch holds at most ``max_items``."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], wait_s: float, max_items: int):
        self._run, self.wait_s, self.max_items = run, wait_s, max_items
        self._changed = threading.Condition()
        self._queue: list[_Job] = []
        self.calls = 0  # graph calls made: fewer than callers when batches were shared
        threading.Thread(target=self._serve, name="shared-batches", daemon=True).start()

    def __call__(self, items: np.ndarray) -> np.ndarray:
        """``run(items)``, sharing one batch with whatever other threads call meanwhile."""
        if not len(items):
            return self._run(items)
        job = _Job(items)
        with self._changed:
            self._queue.append(job)
            self._changed.notify_all()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _take(self) -> list[_Job]:
        """The next batch: the queue's first jobs, once ``wait_s`` has passed since the first or
        ``max_items`` are waiting (a job larger than that goes alone)."""
        with self._changed:
            while not self._queue:
                self._changed.wait()
            deadline = time.monotonic() + self.wait_s
            while sum(len(job.items) for job in self._queue) < self.max_items:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            jobs: list[_Job] = []
            size = 0
            while self._queue and (not jobs or size + len(self._queue[0].items) <= self.max_items):
                jobs.append(self._queue.pop(0))
                size += len(jobs[-1].items)
            return jobs

    def _serve(self) -> None:
        while True:
            jobs = self._take()
            try:
                out = self._run(np.concatenate([job.items for job in jobs]))
                start = 0
                for job in jobs:
                    job.result = out[start : start + len(job.items)]
                    start += len(job.items)
            except Exception as error:  # noqa: BLE001 — handed to every caller of the batch
                for job in jobs:
                    job.error = error
            finally:
                self.calls += 1
                for job in jobs:
                    job.done.set()
