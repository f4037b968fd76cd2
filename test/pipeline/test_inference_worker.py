"""The inference thread: the caller never waits, the oldest waiting frame gives way, errors stay."""

from __future__ import annotations

import threading

import pytest

from evseg_ros.pipeline.inference_worker import InferenceWorker


def test_jobs_run_in_order_off_the_calling_thread():
    errors, ran = [], []
    worker = InferenceWorker(depth=8, on_error=errors.append)
    caller = threading.get_ident()
    done = threading.Event()
    for i in range(5):
        worker.submit(lambda i=i: ran.append((i, threading.get_ident())))
    worker.submit(done.set)
    assert done.wait(10)
    assert [i for i, _ in ran] == list(range(5))
    assert all(thread != caller for _, thread in ran) and not errors
    assert worker.stop()


def test_a_full_queue_drops_the_oldest_waiting_job_and_counts_it():
    release, started = threading.Event(), threading.Event()
    ran = []
    worker = InferenceWorker(depth=1, on_error=lambda err: None)
    worker.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(10)  # one job running, blocking
    assert worker.busy_s() > 0
    assert worker.submit(lambda: ran.append("old"))
    assert not worker.submit(lambda: ran.append("new"))  # "old" gives way
    assert worker.dropped == 1 and worker.queued == 1
    finished = threading.Event()
    worker.submit(finished.set)  # drops "new" in turn
    release.set()
    assert finished.wait(10) and ran == [] and worker.dropped == 2
    assert worker.stop()


def test_an_exception_is_reported_and_the_worker_goes_on():
    errors = []
    worker = InferenceWorker(on_error=errors.append)
    done = threading.Event()
    worker.submit(lambda: 1 / 0)
    assert _wait_idle(worker)
    worker.submit(done.set)
    assert done.wait(10)
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
    assert worker.stop() and worker.done == 2


def _wait_idle(worker: InferenceWorker) -> bool:
    event = threading.Event()
    for _ in range(1000):
        if worker.idle():
            return True
        event.wait(0.01)
    return False


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        InferenceWorker(depth=0, on_error=print)
