"""``ros2 launch evseg_ros rig.launch.py`` for real: colcon build, a recording replayed, Ctrl-C.

The package and the vendored ``event_camera_msgs`` are built with colcon (PyPI colcon, the
README's command) into a workspace whose ``src/evseg_ros`` links to this checkout; the launch
runs from a shell that sourced its ``install/setup.bash`` over the virtualenv (the "underlay"),
on a DDS domain of its own, in a process group of its own. The test receives masks over DDS like
any subscriber, reads the drivers' parameters through their parameter services, sends SIGINT to
``ros2 launch`` and checks that every node finished cleanly within 2 s and that no process is
left behind.

Skipped only where the upstream launch/ros2cli sources (``../shared/ros2``) are absent: without
them ``scripts/bootstrap.sh`` installs neither ``ros2`` nor colcon.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from evseg_ros.nodes.graph import GRAPH

REPO = Path(__file__).resolve().parents[2]
ROS2_SOURCES = REPO.parent / "shared" / "ros2"
VENV = Path(sys.prefix)
VENV_BIN = VENV / "bin"
NODES = tuple(spec.name for spec in GRAPH)
#: colcon stops crawling at a package folder: the nested interface package is named explicitly
COLCON_BASE_PATHS = ("src", "src/evseg_ros/scripts/interfaces")
#: its own DDS domain per test process (conftest's domains are 100-199)
DOMAIN_ID = 200 + os.getpid() % 32
#: a recording small enough for a 2-core machine, rendered once into the shared cache
RECORDING_SIZE = (160, 120)
RECORDING_SECONDS = 3.0
#: the nodes' cold start (imports, the accumulator's numba compile) on a slow shared machine
FIRST_MASKS_TIMEOUT_S = 300.0
#: DESIGN.md: every node stops within 2 s of SIGINT
STOP_BUDGET_S = 2.0
#: environment of the shell that sources the workspace: none of this process's ROS set-up
DROPPED_ENV = (
    "PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH",
    "LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "ROS_DOMAIN_ID", "ROS_LOG_DIR",
    "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION", "VIRTUAL_ENV",
)

pytestmark = pytest.mark.skipif(
    not ROS2_SOURCES.is_dir(),
    reason="../shared/ros2 (upstream launch/ros2cli sources) is absent, so scripts/bootstrap.sh "
    "installed no `ros2 launch` and no colcon",
)


def _base_env(**extra: str) -> dict[str, str]:
    """This environment without its ROS set-up; the virtualenv is the underlay."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["AMENT_PREFIX_PATH"] = str(VENV)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """``colcon build`` of a workspace holding this checkout (the README's command)."""
    for tool in ("ros2", "colcon"):
        if not (VENV_BIN / tool).is_file():
            pytest.fail(f"{VENV_BIN / tool} is missing: run `bash scripts/bootstrap.sh .venv`")
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir()
    (ws / "src" / "evseg_ros").symlink_to(REPO, target_is_directory=True)
    start = time.monotonic()
    build = subprocess.run(
        ["colcon", "build", "--base-paths", *COLCON_BASE_PATHS],
        cwd=ws, env=_base_env(), capture_output=True, text=True, timeout=900, check=False,
    )
    assert build.returncode == 0, f"colcon build failed:\n{build.stdout[-4000:]}{build.stderr}"
    print(f"colcon build of the workspace: {time.monotonic() - start:.1f} s")
    return ws


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, Path]:
    """A simulated recording at another size than config/rig.yaml's, and its calibration."""
    from evseg_ros.sim.recording import RecordingSpec, cached_recording, calibration_yaml

    spec = RecordingSpec(
        seconds=RECORDING_SECONDS, seed=11, fps=10.0, size=RECORDING_SIZE, conditions=("normal",)
    )
    bag = cached_recording(spec, REPO / "output" / "sim_cache" / "recordings", progress=False)
    calibration = tmp_path_factory.mktemp("calibration") / "recording_calibration.yaml"
    calibration.write_text(calibration_yaml(spec.rig_calibration()))
    return bag.resolve(), calibration


class RosLaunch:
    """``ros2 launch ...`` from a shell that sourced the workspace, in its own session."""

    def __init__(self, workspace: Path, arguments: list[str], log_dir: Path) -> None:
        self.marker = uuid.uuid4().hex
        env = _base_env(
            ROS_DOMAIN_ID=str(DOMAIN_ID),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            ROS_LOG_DIR=str(log_dir),
            PYTHONUNBUFFERED="1",
            RCUTILS_COLORIZED_OUTPUT="0",
            EVSEG_LAUNCH_TEST_MARKER=self.marker,
        )
        command = f"source install/setup.bash && exec ros2 launch {shlex.join(arguments)}"
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            ["bash", "-c", command], cwd=workspace, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def tail(self, count: int = 60) -> str:
        return "\n".join(line for _, line in self.lines[-count:])

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5.0)
        return returncode

    def leftovers(self) -> list[str]:
        """Live processes of this launch: in its process group or carrying its marker."""
        found = []
        marker = f"EVSEG_LAUNCH_TEST_MARKER={self.marker}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                state, _, pgid = stat.rpartition(")")[2].split()[:3]
                environ = (proc / "environ").read_bytes()
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # gone meanwhile, or not ours to read
            if state != "Z" and (int(pgid) == self.process.pid or marker in environ.split(b"\0")):
                found.append(f"{proc.name}: {cmdline.strip()}")
        return found

    def kill(self) -> None:
        """Last resort of a failed test: nothing of this launch may outlive it."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for entry in self.leftovers():
            try:
                os.kill(int(entry.partition(":")[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.running():
            self.process.wait(timeout=10.0)


def _spin_until(executor, condition: Callable[[], bool], timeout_s: float, launch: RosLaunch,
                what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if not launch.running():
            pytest.fail(f"ros2 launch exited ({launch.process.returncode}) before {what}:\n"
                        f"{launch.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:.0f} s; launch output:\n{launch.tail()}")
        executor.spin_once(timeout_sec=0.1)


def _parameters(executor, node, remote: str, names: list[str], launch: RosLaunch) -> dict:
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, remote)
    _spin_until(executor, client.services_are_ready, 60.0, launch,
                f"parameter services of {remote}")
    future = client.get_parameters(names)
    _spin_until(executor, future.done, 30.0, launch, f"parameters of {remote}")
    return {
        name: parameter_value_to_python(value)
        for name, value in zip(names, future.result().values)
    }


def test_colcon_builds_both_packages_and_installs_the_executables_for_ros2_run(workspace):
    install = workspace / "install"
    assert (install / "event_camera_msgs").is_dir() and (install / "evseg_ros").is_dir()
    scripts = install / "evseg_ros" / "lib" / "evseg_ros"
    for executable in (*NODES, "recorder", "evseg"):
        assert (scripts / executable).is_file(), f"{executable} not in {scripts}"
    listing = subprocess.run(
        ["bash", "-c", "source install/setup.bash && ros2 pkg executables evseg_ros"],
        cwd=workspace, env=_base_env(), capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split("\n")
    for executable in (*NODES, "recorder"):
        assert f"evseg_ros {executable}" in listing
    # a plain crawl stops at the repository (a package): the nested one needs its base path
    plain = subprocess.run(
        ["colcon", "list", "--names-only"], cwd=workspace, env=_base_env(),
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()
    assert plain == ["evseg_ros"]


def test_replay_without_a_bag_fails_in_one_line_before_any_node(workspace, tmp_path):
    for arguments, message in (
        (["evseg_ros", "rig.launch.py", "source:=replay"], "source:=replay needs a recording"),
        (["evseg_ros", "replay.launch.py"], "missing required argument 'bag'"),
    ):
        launch = RosLaunch(workspace, arguments, tmp_path / "ros_log")
        try:
            returncode = launch.wait(timeout=120.0)
        finally:
            launch.kill()
        assert returncode != 0, launch.output
        assert launch.output.count(message) == 1, launch.output
        assert "process started" not in launch.output


def test_replay_launch_delivers_masks_and_stops_cleanly_on_sigint(workspace, recording, tmp_path):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from evseg_ros.nodes.qos import RESULTS_QOS
    from evseg_ros.sim.recording import EPOCH_NS

    bag, calibration = recording
    rviz_installed = (VENV / "share" / "ament_index" / "resource_index" / "packages" / "rviz2")
    launched_ns = time.time_ns()
    launch = RosLaunch(
        workspace,
        [
            "evseg_ros", "rig.launch.py", "source:=replay", f"bag:={bag}",
            "loop:=true", "rviz:=true",  # the calibration comes from the recording
        ],
        tmp_path / "ros_log",
    )
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    executor = SingleThreadedExecutor(context=context)
    try:
        node = Node("launch_test_probe", context=context)
        executor.add_node(node)
        masks: list[Image] = []
        node.create_subscription(Image, "/rig/segmentation/mask", masks.append, RESULTS_QOS)
        _spin_until(executor, lambda: len(masks) >= 3, FIRST_MASKS_TIMEOUT_S, launch, "masks")
        print(f"first masks {time.monotonic() - launch.started:.1f} s after the launch")

        # the recording's frames (recorded stamps), on the recording's calibration grid
        for mask in masks:
            assert mask.encoding == "mono8"
            assert (mask.width, mask.height) == RECORDING_SIZE
            stamp = mask.header.stamp.sec * 1_000_000_000 + mask.header.stamp.nanosec
            assert EPOCH_NS <= stamp <= EPOCH_NS + int(RECORDING_SECONDS * 1e9)
        # both drivers replay the bag with the launch's settings, on one wall-clock epoch
        names = [
            "source", "bag_path", "replay_pacing", "replay_rate", "replay_loop",
            "replay_epoch_ns", "replay_publish_clock", "calibration_file",
        ]
        evk4 = _parameters(executor, node, "/rig/evk4_driver", names, launch)
        flir = _parameters(executor, node, "/rig/flir_driver", names, launch)
        for driver in (evk4, flir):
            assert driver["source"] == "bag" and driver["bag_path"] == str(bag)
            assert (driver["replay_pacing"], driver["replay_rate"], driver["replay_loop"]) == (
                "realtime", 1.0, True,
            )
            # the calibration the recording carries, which the masks' size above confirms
            assert Path(driver["calibration_file"]).read_text() == calibration.read_text()
        assert evk4["replay_epoch_ns"] == flir["replay_epoch_ns"]
        assert launched_ns + 3_000_000_000 <= evk4["replay_epoch_ns"] <= time.time_ns()
        assert (evk4["replay_publish_clock"], flir["replay_publish_clock"]) == (False, True)
        for name in ("accumulator", "segmentation"):
            other = _parameters(executor, node, f"/rig/{name}", ["calibration_file"], launch)
            assert other["calibration_file"] == evk4["calibration_file"]
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        stopped = _interrupt(launch)

    _assert_stopped_cleanly(launch, stopped)
    output = launch.output
    if not rviz_installed.exists():
        assert "rviz2 is not installed: the rig runs without RViz" in output
        assert "[rviz2" not in output


def test_managed_replay_launch_brings_the_lifecycle_nodes_up_and_delivers_masks(
    workspace, recording, tmp_path
):
    """``managed:=true``: lifecycle nodes, configured and activated by the launch itself,
    the drivers only once the accumulator and the segmentation node are active."""
    import rclpy
    from lifecycle_msgs.srv import GetState
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from evseg_ros.nodes.qos import RESULTS_QOS

    bag, _calibration = recording
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    executor = SingleThreadedExecutor(context=context)
    node = Node("managed_launch_probe", context=context)
    executor.add_node(node)
    masks: list[Image] = []
    node.create_subscription(Image, "/rig/segmentation/mask", masks.append, RESULTS_QOS)
    launch = RosLaunch(
        workspace,
        ["evseg_ros", "rig.launch.py", "source:=replay", f"bag:={bag}", "loop:=true",
         "managed:=true"],
        tmp_path / "ros_log",
    )
    try:
        _spin_until(executor, lambda: len(masks) >= 3, FIRST_MASKS_TIMEOUT_S, launch, "masks")
        print(f"first masks {time.monotonic() - launch.started:.1f} s after the launch")
        assert all((mask.width, mask.height) == RECORDING_SIZE for mask in masks)
        # each driver is activated on its own once it is configured (a frame driver that is
        # ready first streams alone: frame-only masks), so the masks may come before the
        # event driver's activation: every node must get there, not all at the same moment
        clients = {name: node.create_client(GetState, f"/rig/{name}/get_state") for name in NODES}
        states = {}
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            for name, client in clients.items():
                _spin_until(executor, client.service_is_ready, 60.0, launch, f"{name}/get_state")
                future = client.call_async(GetState.Request())
                _spin_until(executor, future.done, 30.0, launch, f"the state of {name}")
                states[name] = future.result().current_state.label
            if set(states.values()) == {"active"}:
                break
            executor.spin_once(timeout_sec=0.5)
        assert states == dict.fromkeys(NODES, "active")
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        stopped = _interrupt(launch)

    _assert_stopped_cleanly(launch, stopped)
    # each node logs its transitions: configured once, activated once, the drivers last
    activated = {}
    for name in NODES:
        for verb, state in (("configure", "inactive"), ("activate", "active")):
            pattern = rf"\[{name}-\d+\].*\]: {verb} done in [0-9.]+ s, now {state}$"
            seen = [at for at, line in launch.lines if re.search(pattern, line)]
            assert len(seen) == 1, f"{name}: {verb} logged {len(seen)} times:\n{launch.tail()}"
        activated[name] = seen[0]
    consumers_up = max(activated["accumulator"], activated["segmentation"])
    for driver in ("evk4_driver", "flir_driver"):
        assert activated[driver] > consumers_up, activated


def _interrupt(launch: RosLaunch) -> tuple[float | None, int | None, str | None, list[str]]:
    """SIGINT to ``ros2 launch`` as Ctrl-C sends it; (when, exit status, tail if stuck, left)."""
    interrupted = returncode = stop_timeout = None
    if launch.running():
        interrupted = time.monotonic()
        launch.process.send_signal(signal.SIGINT)
    try:
        returncode = launch.wait(timeout=30.0)
    except subprocess.TimeoutExpired:
        stop_timeout = launch.tail()
    leftovers = launch.leftovers()
    launch.kill()
    return interrupted, returncode, stop_timeout, leftovers


def _assert_stopped_cleanly(launch: RosLaunch, stopped: tuple) -> None:
    """Every node finished cleanly within the stop budget; nothing left behind."""
    interrupted, returncode, stop_timeout, leftovers = stopped
    assert stop_timeout is None, f"ros2 launch still running 30 s after SIGINT:\n{stop_timeout}"
    assert interrupted is not None, launch.tail()
    assert returncode == 0, launch.tail()
    assert "process has died" not in launch.output, launch.tail()
    for executable in NODES:
        finished = [
            at for at, line in launch.lines
            if re.search(rf"\[{executable}-\d+\]: process has finished cleanly", line)
        ]
        assert len(finished) == 1, f"{executable} did not finish cleanly:\n{launch.tail()}"
        assert finished[0] - interrupted < STOP_BUDGET_S, (
            f"{executable} took {finished[0] - interrupted:.2f} s to stop"
        )
    print(f"all nodes stopped {max(at for at, _ in launch.lines) - interrupted:.2f} s after SIGINT")
    assert leftovers == [], f"processes left behind: {leftovers}"
