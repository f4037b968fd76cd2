"""``main()`` for every node executable: start, spin, and always shut down cleanly.

SIGINT (Ctrl-C, and what ``ros2 launch`` sends first) and SIGTERM end a node within a fraction of
a second with exit status 0, whatever it is doing: building itself (the accumulator's first numba
compile takes many seconds on a small machine), running a callback or waiting for one.

- rclpy's own signal handlers are not used: they shut the context down from another thread while
  a callback may still run, so that callback's next ``publish`` fails ("publisher's context is
  invalid") and the process exits 1, and a constructor still running carries on to its end.
  Instead both signals raise ``KeyboardInterrupt`` in the main thread, between two Python
  bytecodes; spinning stops there, and the node and the context are shut down afterwards, in
  ``finally``, by the thread that runs every callback: nothing publishes after the context is
  gone.
- The executor waits at most :data:`WAKE_PERIOD_S` at a time, so a signal is acted on even while
  no callback is due (a Python signal handler only runs when the main thread runs Python code).
- After a stop signal the process ends as soon as the node is shut down: exit handlers run and
  the standard streams are flushed, but the interpreter's module teardown is skipped. With torch,
  numba and ONNX Runtime loaded that teardown alone took 1.5-2.5 s per process when the four
  nodes of the rig stopped together on a 2-core machine (0.1-0.3 s for the whole launch without
  it).

A node that cannot start because of what it was configured with (a parameter file naming an
unknown parameter or a value out of range, a calibration file that does not load, a missing
file: :data:`STARTUP_ERRORS` raised while it is built) ends with one line on stderr and exit
status 2, not a traceback: the message names what to fix, the traceback would only bury it.
The parameter files on the command line are checked against the node's table before
``rclpy.init`` (:mod:`evseg_ros.nodes.config_check`), since rcl ignores unknown keys.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from evseg_ros.nodes.config_check import check_node_args, node_name_for, remember_params_files
from evseg_ros.nodes.config_errors import one_line

#: longest the executor waits for work before looking at pending signals [s]
WAKE_PERIOD_S = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: raised while a node is built, these mean it was configured wrong (ConfigError and
#: CalibrationError are ValueErrors; a missing file an OSError): one line, exit status 2
STARTUP_ERRORS = (ValueError, OSError)
#: exit status of a node (or ``evseg run``) that could not start with its configuration
STARTUP_ERROR_STATUS = 2


class _StopSignal:
    """The SIGINT/SIGTERM handler while a node spins; remembers whether it fired."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.received = signum
        # the first signal stops the node; later ones must not interrupt the shutdown it starts
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_StopSignal]:
    """Turn SIGINT and SIGTERM into ``KeyboardInterrupt`` (main thread only; restored after)."""
    handler = _StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield handler
        return
    previous = {stop_signal: signal.signal(stop_signal, handler) for stop_signal in STOP_SIGNALS}
    try:
        yield handler
    finally:
        for stop_signal, previous_handler in previous.items():
            signal.signal(stop_signal, previous_handler)


def exit_process(status: int) -> None:
    """End the process as the interpreter would, without its module teardown."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def release_half_built_nodes(error: BaseException) -> None:
    """Destroy the nodes whose constructor ``error`` interrupted, with rclpy's own method.

    The context still tracks such a node and destroys it on shutdown through its class's
    ``destroy_node``, which may use attributes the constructor never set (the drivers' source):
    that error would replace the one that matters. The half-built nodes are the ``self`` of the
    constructor frames in the traceback.
    """
    seen: set[int] = set()
    traceback = error.__traceback__
    while traceback is not None:
        candidate = traceback.tb_frame.f_locals.get("self")
        traceback = traceback.tb_next
        if isinstance(candidate, Node) and id(candidate) not in seen:
            seen.add(id(candidate))
            with contextlib.suppress(Exception):
                Node.destroy_node(candidate)
            with contextlib.suppress(Exception):
                candidate.context.untrack_node(candidate)


def report_startup_error(program: str, error: BaseException) -> int:
    """Print ``<program>: <error>`` as one line on stderr; the exit status to end with."""
    print(f"{program}: {one_line(error)}", file=sys.stderr, flush=True)
    return STARTUP_ERROR_STATUS


def _program(factory: Callable[[], Node], args: list[str]) -> str:
    """What a one-line error starts with: the node's name, else the script's."""
    name = node_name_for(factory, args)
    if name:
        return name
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else ""
    return script or getattr(factory, "__name__", "node")


def run_node(
    factory: Callable[[], Node], args: list[str] | None = None, *, exit_on_signal: bool = True
) -> int:
    """Create the node from ``factory`` and spin it until SIGINT, SIGTERM or an external shutdown.

    Args:
        factory: builds the node (after ``rclpy.init``).
        args: command line arguments for ``rclpy.init`` (``None``: ``sys.argv``).
        exit_on_signal: after SIGINT/SIGTERM, end the process (status 0) once the node is shut
            down instead of returning; False for callers that go on afterwards.

    Returns:
        0 after an external shutdown (or a stop signal with ``exit_on_signal=False``);
        :data:`STARTUP_ERROR_STATUS` when the node could not start with its configuration
        (:data:`STARTUP_ERRORS` while checking the parameter files or building it: one line on
        stderr). Any other error while building the node, and any error in a callback,
        propagates, unless a stop signal came first.
    """
    argv = list(sys.argv if args is None else args)
    status = 0
    with stop_on_signals() as stop:
        node = None
        executor = None
        try:
            check_node_args(factory, argv)
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            remember_params_files(rclpy.get_default_context(), argv)
            try:
                node = factory()
            except BaseException as err:
                release_half_built_nodes(err)
                raise
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while rclpy.ok():
                executor.spin_once(timeout_sec=WAKE_PERIOD_S)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except STARTUP_ERRORS as err:
            if stop.received is None:
                if node is not None:
                    raise  # from a callback: a bug, with its traceback
                status = report_startup_error(_program(factory, argv), err)
        except Exception:
            # interrupted code that turned the KeyboardInterrupt into another error
            if stop.received is None:
                raise
        finally:
            if executor is not None:
                executor.shutdown()
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        if stop.received is not None and exit_on_signal:
            exit_process(0)
    return status
