"""What ``launch/rig_core.launch.py`` starts for given launch arguments, without processes.

Its ``launch_setup`` runs against a bare ``LaunchContext`` with ``Node`` replaced by a recorder,
so the parameters and arguments each node would get are checked directly: the sources, the
checks that stop a launch before any node starts, and RViz (started on the launch's namespace
where rviz2 is installed, skipped where it is not). ``test_ros2_launch.py`` runs the real thing.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROS2_SOURCES = REPO.parent / "shared" / "ros2"

pytestmark = pytest.mark.skipif(
    not ROS2_SOURCES.is_dir(),
    reason="../shared/ros2 (upstream launch/ros2cli sources) is absent, so the launch system is "
    "not installed",
)


class RecordedNode:
    """Stands in for launch_ros's ``Node``: keeps what the launch file passed."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    @property
    def executable(self) -> str:
        return self.kwargs["executable"]

    def parameters(self) -> dict:
        merged: dict = {}
        for element in self.kwargs["parameters"][1:]:
            merged.update(element)
        return merged


@pytest.fixture
def core(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "rig_core_launch", REPO / "launch" / "rig_core.launch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "Node", RecordedNode)
    return module


@pytest.fixture
def prefix(tmp_path, monkeypatch) -> Path:
    """An ament prefix holding evseg_ros's share (the RViz config) and nothing else."""
    prefix = tmp_path / "prefix"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "evseg_ros").touch()
    (prefix / "share" / "evseg_ros" / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "rig.rviz", prefix / "share" / "evseg_ros" / "config")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    return prefix


def _fake_rviz2(prefix: Path) -> None:
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    executable = prefix / "lib" / "rviz2" / "rviz2"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)


def _setup(core, **arguments: str) -> list:
    from launch.launch_context import LaunchContext

    values = {
        "source": "sim", "bag": "", "rate": "1.0", "pacing": "realtime", "loop": "false",
        "replay_start_delay_s": "3.0", "calibration": "", "model": "models/cacd_b0_sim.onnx",
        "backend": "auto", "namespace": "rig", "config": str(REPO / "config" / "rig.yaml"),
        "rviz": "false", "managed": "false", "device": "",
    }
    values.update(arguments)
    context = LaunchContext()
    context.launch_configurations.update(values)
    return core.launch_setup(context)


def _nodes(actions: list) -> dict[str, RecordedNode]:
    return {a.executable: a for a in actions if isinstance(a, RecordedNode)}


def test_sim_drivers_share_one_epoch_and_the_config_comes_first(core):
    before = time.time_ns()
    nodes = _nodes(_setup(core))
    assert set(nodes) == {"evk4_driver", "flir_driver", "accumulator", "segmentation"}
    evk4, flir = nodes["evk4_driver"].parameters(), nodes["flir_driver"].parameters()
    assert evk4["source"] == flir["source"] == "sim"
    assert before <= evk4["sim_epoch_ns"] == flir["sim_epoch_ns"] <= time.time_ns()
    for node in nodes.values():
        assert node.kwargs["parameters"][0] == str(REPO / "config" / "rig.yaml")
        assert node.kwargs["namespace"] == "rig"
        assert "calibration_file" not in node.parameters()  # empty: the config's


def test_replay_sets_both_drivers_and_the_calibration_reaches_all_nodes(core, tmp_path):
    bag = tmp_path / "drive"
    bag.mkdir()
    before = time.time_ns()
    nodes = _nodes(
        _setup(
            core, source="replay", bag=str(bag), rate="0.5", pacing="lockstep", loop="true",
            replay_start_delay_s="2.5", calibration="/calib/rig.yaml",
        )
    )
    evk4, flir = nodes["evk4_driver"].parameters(), nodes["flir_driver"].parameters()
    expected = {
        "source": "bag", "bag_path": str(bag), "replay_pacing": "lockstep", "replay_rate": 0.5,
        "replay_loop": True, "calibration_file": "/calib/rig.yaml",
    }
    assert {k: evk4[k] for k in expected} == expected
    assert {k: flir[k] for k in expected} == expected
    assert evk4["replay_epoch_ns"] == flir["replay_epoch_ns"]
    assert before + 2_500_000_000 <= evk4["replay_epoch_ns"] <= time.time_ns() + 2_500_000_000
    assert flir["replay_publish_clock"] is True and "replay_publish_clock" not in evk4
    for name in ("accumulator", "segmentation"):
        assert nodes[name].parameters()["calibration_file"] == "/calib/rig.yaml"


def test_a_replayed_recording_brings_its_own_calibration(core, short_recording):
    from evseg_ros.sim.recording import stored_calibration

    nodes = _nodes(_setup(core, source="replay", bag=str(short_recording)))
    paths = {node.parameters()["calibration_file"] for node in nodes.values()}
    assert len(paths) == 1
    assert Path(paths.pop()).read_text() == stored_calibration(short_recording)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"source": "replay"}, "source:=replay needs a recording: pass bag:="),
        ({"source": "replay", "bag": "/no/such/drive"}, "bag:=/no/such/drive does not exist"),
        ({"source": "replay", "rate": "0"}, "rate:=0 must be a number > 0"),
        ({"source": "replay", "rate": "fast"}, "rate:=fast must be a number > 0"),
        ({"source": "replay", "replay_start_delay_s": "-1"}, "replay_start_delay_s:=-1 must be"),
    ],
)
def test_replay_arguments_that_cannot_work_stop_the_launch_before_any_node(
    core, tmp_path, arguments, message
):
    arguments = dict(arguments)
    if "bag" not in arguments and "needs a recording" not in message:
        arguments["bag"] = str(tmp_path)
    with pytest.raises(core.RigLaunchError, match="no node was started") as error:
        _setup(core, **arguments)
    assert message in str(error.value)


def test_rviz_is_skipped_with_a_warning_where_rviz2_is_missing(core, prefix, monkeypatch):
    warnings = []
    monkeypatch.setattr(
        core, "get_logger", lambda name: type("L", (), {"warning": warnings.append})()
    )
    nodes = _nodes(_setup(core, rviz="true"))
    assert "rviz2" not in nodes and len(nodes) == 4
    assert warnings == ["rviz:=true, but rviz2 is not installed: the rig runs without RViz"]


def test_rviz_shows_the_installed_config_on_the_default_namespace(core, prefix):
    _fake_rviz2(prefix)
    rviz = _nodes(_setup(core, rviz="true"))["rviz2"]
    assert rviz.kwargs["arguments"] == [
        "-d", str(prefix / "share" / "evseg_ros" / "config" / "rig.rviz")
    ]


def test_rviz_follows_the_namespace_through_a_temporary_config(core, prefix):
    from launch.actions import RegisterEventHandler
    from launch.events import Shutdown
    from launch.launch_context import LaunchContext

    _fake_rviz2(prefix)
    actions = _setup(core, rviz="true", namespace="robot1/rig")
    rviz = _nodes(actions)["rviz2"]
    option, path = rviz.kwargs["arguments"]
    config = Path(path)
    try:
        assert option == "-d" and config.name.endswith(".rviz")
        text = config.read_text()
        for topic in ("segmentation/overlay", "segmentation/mask", "frame/image_raw"):
            assert f"Value: /robot1/rig/{topic}" in text
        assert "Value: /rig/" not in text
        assert "Fixed Frame: frame_camera" in text
        # the temporary file goes when the launch shuts down
        (handler,) = [a for a in actions if isinstance(a, RegisterEventHandler)]
        handler.event_handler.handle(Shutdown(), LaunchContext())
        assert not config.exists()
    finally:
        config.unlink(missing_ok=True)


def test_managed_starts_lifecycle_nodes_and_configures_each_when_it_starts(core):
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessStart
    from launch_ros.actions import LifecycleNode
    from launch_ros.event_handlers import OnStateTransition

    actions = _setup(core, managed="true", calibration="/calib/rig.yaml")
    assert not _nodes(actions)  # no plain node
    nodes = {a.node_executable: a for a in actions if isinstance(a, LifecycleNode)}
    assert set(nodes) == {"evk4_driver", "flir_driver", "accumulator", "segmentation"}
    for node in nodes.values():
        words = [part[0].text for part in node.cmd[1:] if hasattr(part[0], "text")]
        assert words[0] == "--managed"  # before --ros-args: the executable's managed twin
    handlers = [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)]
    # every node configured when its process starts; consumers activated once configured,
    # their activation watched; the drivers' configure watched
    assert sum(isinstance(h, OnProcessStart) for h in handlers) == 4
    assert sum(isinstance(h, OnStateTransition) for h in handlers) == 2 + 2 + 2


def test_managed_drivers_start_streaming_only_once_both_consumers_are_active(core):
    from launch_ros.actions import LifecycleNode
    from lifecycle_msgs.msg import Transition

    actions = _setup(core, managed="true")
    nodes = {a.node_executable: a for a in actions if isinstance(a, LifecycleNode)}
    bringup = core.ManagedBringup(list(nodes.values()))

    def activated(emitted: list) -> set[str]:
        names = set()
        for emit in emitted:
            assert emit.event.transition_id == Transition.TRANSITION_ACTIVATE
            names |= {n for n, node in nodes.items() if emit.event.lifecycle_node_matcher(node)}
        return names

    assert activated(bringup._driver_configured(None, nodes["evk4_driver"])) == set()
    assert activated(bringup._consumer_active(None, nodes["segmentation"])) == set()
    # the last consumer up releases the drivers configured so far ...
    assert activated(bringup._consumer_active(None, nodes["accumulator"])) == {"evk4_driver"}
    # ... and a driver configured later goes at once
    assert activated(bringup._driver_configured(None, nodes["flir_driver"])) == {"flir_driver"}


def test_device_goes_to_the_accumulator_and_the_segmentation_only(core) -> None:
    nodes = _nodes(_setup(core, device="cuda:1"))
    for name in ("accumulator", "segmentation"):
        assert nodes[name].parameters()["device"] == "cuda:1"
    for name in ("evk4_driver", "flir_driver"):
        assert "device" not in nodes[name].parameters()
    assert all("device" not in node.parameters() for node in _nodes(_setup(core)).values())
