"""Run inference on a thread of its own, newest frames first, so the executor never waits on it.

A network takes tens to hundreds of milliseconds a frame on a CPU. Run in a subscription callback,
that time blocks every other callback of the executor: the node's diagnostics stop exactly when
they matter (an overloaded or stalled stage looks like silence), and in the one-process runner the
event decoding stops too. Here the callback only hands the frame over; one worker thread runs the
jobs (ONNX Runtime and torch release the GIL while they compute), and when frames come faster than
it can take them the oldest waiting one is dropped and counted: a late mask of an old frame is
worth less than a current one, and a queue that grows without bound is latency without bound.

With ``depth=1`` this is newest-pair-only on the GPU path too: the segmentation node uploads a
frame inside its job, so a job dropped for a newer one never cost a transfer, and a dropped
job's tensors (an event frame built on the GPU) are freed with it. At most two frames are held
on the device at once: the one running and the one waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

Job = Callable[[], None]


class InferenceWorker:
    """One worker thread with a bounded queue of jobs that drops the oldest when full.

    Args:
        depth: Jobs that may wait besides the one running (>= 1).
        on_error: Called (on the worker thread) with an exception a job raised; the worker
            goes on with the next job.
    """

    def __init__(self, *, depth: int = 1, on_error: Callable[[BaseException], None]) -> None:
        if depth < 1:
            msg = f"depth must be >= 1, got {depth!r}"
            raise ValueError(msg)
        self.depth = depth
        self._on_error = on_error
        self._jobs: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._started_ns: int | None = None
        self.dropped = 0
        self.done = 0
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue ``job``; returns False when an older waiting job had to be dropped for it."""
        with self._wake:
            dropped = len(self._jobs) >= self.depth
            if dropped:
                self._jobs.popleft()
                self.dropped += 1
            self._jobs.append(job)
            self._wake.notify()
        return not dropped

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def busy_s(self) -> float:
        """How long the running job has been running (0 when idle): a stall shows here."""
        started = self._started_ns
        return 0.0 if started is None else (time.monotonic_ns() - started) / 1e9

    def idle(self) -> bool:
        """Nothing running and nothing queued."""
        with self._wake:
            return not self._jobs and self._started_ns is None

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Drop what waits, let the running job end, join; False if it did not end in time."""
        with self._wake:
            self._stopping = True
            self._jobs.clear()
            self._wake.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
                self._started_ns = time.monotonic_ns()
            try:
                job()
            except BaseException as err:  # noqa: BLE001 (the worker must outlive any job)
                self._on_error(err)
            finally:
                with self._wake:
                    self._started_ns = None
                    self.done += 1
