"""Plain or managed (lifecycle) nodes from one class: start-up split into the lifecycle's stages.

Every graph node starts in two steps that a lifecycle can tell apart:

- **configure**: what loads and allocates: the calibration, models and engines, event
  decoders, the camera or recording opened, publishers;
- **activate**: the streams start: subscriptions and timers are created, so drivers poll their
  sources and consumers receive; **deactivate** stops them again, **cleanup** releases what
  configure made, **shutdown** whatever is left.

A plain node (the default) runs both steps in its constructor, as it always did. Its managed
twin (``--managed`` on the node's command line, ``managed:=true`` in the launch files) is a
``rclpy`` lifecycle node that waits for the transitions. Why bother: a model that takes seconds
to load (a TensorRT engine minutes to build) is ready before any stream starts, a launch or a
system manager brings the graph up in order and can stop a stage without ending its process, and
a configure that fails (a model missing, no camera) leaves the node alive in ``unconfigured``
with the reason in its log and on ``/diagnostics``, ready for another ``configure``.

The stages find what they created by difference (the node's publishers, subscriptions, timers,
clients and services before and after), so a node's hooks only create what they need and never
list it a second time for the teardown. ``/diagnostics`` is published in every state: the node's
own status while active, else the state and, after a failed configure, why.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any, ClassVar

from rclpy.client import Client
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from evseg_ros.nodes.config_errors import one_line
from evseg_ros.nodes.diagnostics import ERROR, OK, DiagnosticsPublisher

#: the node's command-line flag (before ``--ros-args``) that asks for the managed twin
MANAGED_FLAG = "--managed"
#: raised by a configure hook, these are a configuration the node cannot start with (the same
#: errors that end a plain node with exit status 2): a managed node reports them and stays up
CONFIGURE_ERRORS = (ValueError, OSError)
#: lifecycle states a shutdown transition starts from
_SHUTDOWN_FROM = ("unconfigured", "inactive", "active")


class Stage(Enum):
    """Where a staged node is; the lifecycle's primary states."""

    UNCONFIGURED = "unconfigured"
    INACTIVE = "inactive"
    ACTIVE = "active"


class StagedNode(Node):
    """A node whose start-up is split into configure and activate hooks.

    Subclasses declare their parameters in the constructor, then call :meth:`start`; they
    implement :meth:`_configure` and :meth:`_activate` (and, when they hold more than ROS
    entities, :meth:`_deactivate` and :meth:`_cleanup`) and :meth:`_diagnostics`.

    ``error`` holds a problem the node can live with (a model or camera missing): a plain node
    stays up and reports it as ERROR, a managed one fails its configure with it.
    """

    #: True in the lifecycle twins :func:`managed_variant` makes
    managed: ClassVar[bool] = False

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.stage = Stage.UNCONFIGURED
        self.error = ""
        self._configured: list[Any] = []
        self._activated: list[Any] = []
        self.diagnostics = DiagnosticsPublisher(self, self._report)

    # -- hooks -----------------------------------------------------------------------------------
    def _configure(self) -> None:
        """Load and allocate; set ``error`` for a problem the node can live with."""
        raise NotImplementedError

    def _activate(self) -> None:
        """Create the subscriptions and timers that make the node stream."""
        raise NotImplementedError

    def _deactivate(self) -> None:
        """Stop what :meth:`_activate` started besides ROS entities (those go by themselves);
        must also undo a half activation."""

    def _cleanup(self) -> None:
        """Release what :meth:`_configure` made besides ROS entities; must also undo a half
        configure (it runs after a configure that raised)."""

    def _diagnostics(self) -> tuple[bytes, str, dict[str, Any]]:
        raise NotImplementedError

    # -- stages ----------------------------------------------------------------------------------
    def start(self) -> None:
        """End of a node's constructor: a plain node configures and activates now.

        Raises:
            ValueError, OSError: a configuration the node cannot start with (the plain node's
                exit status 2, one line).
        """
        if not self.managed:
            self.configure_stage()
            self.activate_stage()

    def configure_stage(self) -> None:
        self.error = ""
        with self._collect(self._configured):
            self._configure()
        self.stage = Stage.INACTIVE

    def activate_stage(self) -> None:
        with self._collect(self._activated):
            self._activate()
        self.stage = Stage.ACTIVE

    def deactivate_stage(self) -> None:
        try:
            self._deactivate()
        finally:
            self._destroy(self._activated)
            self.stage = Stage.INACTIVE

    def cleanup_stage(self) -> None:
        """Back to unconfigured; also after a configure that failed half-way."""
        try:
            self._cleanup()
        finally:
            self._destroy(self._configured)
            self.stage = Stage.UNCONFIGURED

    def stop_stages(self) -> None:
        """From any stage back to unconfigured with nothing held, also after a stage that
        raised half-way (shutdown, errors, destroy)."""
        if getattr(self, "stage", None) is None:
            return  # a constructor that failed before the stages existed
        if self.stage is Stage.ACTIVE or self._activated:
            self.deactivate_stage()
        if self.stage is Stage.INACTIVE or self._configured:
            self.cleanup_stage()

    def destroy_node(self) -> None:
        self.stop_stages()
        super().destroy_node()

    # -- internals -------------------------------------------------------------------------------
    def _report(self) -> tuple[bytes, str, dict[str, Any]]:
        """What /diagnostics says: the node's own status while it is active, else its state."""
        if self.stage is Stage.ACTIVE:
            return self._diagnostics()
        values = {"state": self.stage.value}
        if self.error:
            return ERROR, f"{self.stage.value}: {self.error}", values
        return OK, self.stage.value, values

    def _entities(self) -> list[Any]:
        return [
            *self.publishers, *self.subscriptions, *self.timers, *self.clients, *self.services,
        ]

    @contextlib.contextmanager
    def _collect(self, into: list[Any]) -> Iterator[None]:
        """Append the entities created inside the block to ``into`` (also when it raises)."""
        before = {id(entity) for entity in self._entities()}
        try:
            yield
        finally:
            into.extend(entity for entity in self._entities() if id(entity) not in before)

    def _destroy(self, entities: list[Any]) -> None:
        destroyers = (
            (Publisher, self.destroy_publisher),
            (Subscription, self.destroy_subscription),
            (Timer, self.destroy_timer),
            (Client, self.destroy_client),
            (Service, self.destroy_service),
        )
        while entities:
            entity = entities.pop()
            for kind, destroy in destroyers:
                if isinstance(entity, kind):
                    destroy(entity)
                    break


class ManagedMixin(LifecycleNodeMixin):
    """The lifecycle transitions of a :class:`StagedNode`, mixed in by :func:`managed_variant`."""

    #: the plain class this twin was made from (config checks read its parameter table)
    managed_from: ClassVar[type[StagedNode]]

    def __init__(self, **kwargs: Any) -> None:
        self.managed_from.__init__(self, **kwargs)
        LifecycleNodeMixin.__init__(self)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._attempt("configure", self.configure_stage)
        if result == TransitionCallbackReturn.FAILURE:
            self.cleanup_stage()  # what configure made before it failed; error is kept
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._attempt("activate", self.activate_stage)
        if result == TransitionCallbackReturn.FAILURE:
            self.deactivate_stage()  # what activate made before it failed
        return result

    def _attempt(self, what: str, stage: Callable[[], None]) -> TransitionCallbackReturn:
        """Run a stage: a configuration problem fails the transition (back to where it came
        from), anything else is an error (:meth:`on_error` releases everything). Both are
        logged with the reason, which rclpy would swallow, and kept for ``/diagnostics``."""
        self.error = ""
        start = time.monotonic()
        try:
            stage()
        except CONFIGURE_ERRORS as err:
            self.error = one_line(err)
        except Exception as err:  # noqa: BLE001 (reported, then the lifecycle's error path)
            self.error = f"{type(err).__name__}: {one_line(err)}"
            self.get_logger().error(f"{what} raised: {self.error}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.ERROR
        if not self.error:
            elapsed = time.monotonic() - start
            self.get_logger().info(f"{what} done in {elapsed:.2f} s, now {self.stage.value}")
            return TransitionCallbackReturn.SUCCESS
        self.get_logger().error(f"{what} failed: {self.error}")
        return TransitionCallbackReturn.FAILURE

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate_stage()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup_stage()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_stages()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # a stage raised something unexpected (logged by _attempt): release what the stages
        # made and go back to unconfigured
        with contextlib.suppress(Exception):
            self.stop_stages()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        # the shutdown transition tells whoever manages the node (the launch) that it is gone;
        # in the middle of another transition (a signal during configure) it is not possible,
        # and the stages are released below anyway
        with contextlib.suppress(Exception):
            if self._state_machine.current_state[1] in _SHUTDOWN_FROM:
                self.trigger_shutdown()
        super().destroy_node()


_VARIANTS: dict[type[StagedNode], type[StagedNode]] = {}


def managed_variant(plain: type[StagedNode]) -> type[StagedNode]:
    """The lifecycle twin of a staged node class: same name, parameters, topics and hooks."""
    if plain not in _VARIANTS:
        _VARIANTS[plain] = type(
            f"Managed{plain.__name__}",
            (ManagedMixin, plain),
            {"managed": True, "managed_from": plain, "__module__": plain.__module__},
        )
    return _VARIANTS[plain]


def managed_requested(args: Sequence[str] | None = None) -> bool:
    """Whether the command line (``sys.argv`` when None) asks for the managed node."""
    argv = list(sys.argv if args is None else args)
    if "--ros-args" in argv:
        argv = argv[: argv.index("--ros-args")]
    return MANAGED_FLAG in argv


def node_class(plain: type[StagedNode], args: Sequence[str] | None = None) -> type[StagedNode]:
    """``plain``, or its lifecycle twin when the command line says ``--managed``."""
    return managed_variant(plain) if managed_requested(args) else plain


__all__ = [
    "CONFIGURE_ERRORS",
    "MANAGED_FLAG",
    "ManagedMixin",
    "Stage",
    "StagedNode",
    "managed_requested",
    "managed_variant",
    "node_class",
]
