"""ROS and transport checks: the real rclpy row, ``/dev/shm`` against a profile's segment on
folders and profiles in ``tmp_path``, the Fast DDS profile variable and the DDS domain."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evseg_ros.doctor.check import ERROR, MISSING, OK, WARN
from evseg_ros.doctor.ros_checks import (
    PROFILE_ENV,
    check_fastdds_profile,
    check_ros_domain,
    check_shm,
    judge_shm,
    shm_segment_bytes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024**2


def test_rclpy_row_names_the_rmw(checks):
    import rclpy

    assert rclpy.get_rmw_implementation_identifier() in checks["rclpy"].detail


PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles><transport_descriptors>
  <transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type></transport_descriptor>
  <transport_descriptor><transport_id>shm</transport_id><type>SHM</type>
    <segment_size>{size}</segment_size></transport_descriptor>
</transport_descriptors></profiles></dds>
"""


def _profile(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "profile.xml"
    path.write_text(PROFILE.format(size=size))
    return path


def test_segment_size_of_the_shipped_profile():
    shipped = REPO_ROOT / "config" / "fastdds_shm.xml"
    assert shm_segment_bytes(shipped) == 256 * MIB


@pytest.mark.parametrize("text", ["not xml", PROFILE.replace("SHM", "UDPv6").format(size=1)])
def test_profile_without_a_segment_is_an_error_row(tmp_path, text):
    bad = tmp_path / "bad.xml"
    bad.write_text(text)
    check = check_shm(tmp_path, bad)
    assert check.status == ERROR
    assert str(bad) in check.detail


def test_shm_folder_against_a_small_and_a_huge_segment(tmp_path):
    usage = shutil.disk_usage(tmp_path)
    small = check_shm(tmp_path, _profile(tmp_path, 4096), participants=2)
    assert small.status == OK
    assert "2 x 0 MiB" in small.detail
    huge = usage.total // 2 + MIB  # two of them cannot fit on the filesystem
    check = check_shm(tmp_path, _profile(tmp_path, huge), participants=2)
    assert check.status == ERROR
    assert "too small" in check.detail
    assert "remount,size=" in check.fix and "--shm-size=" in check.fix
    missing = check_shm(tmp_path / "no-shm", _profile(tmp_path, 4096))
    assert missing.status == MISSING


@pytest.mark.parametrize(
    ("total_mib", "free_mib", "status", "size_hint"),
    [
        (64, 64, ERROR, "size=2G"),  # docker's default /dev/shm
        (1536, 1536, OK, None),  # exactly 6 x 256 MiB
        (1535, 1535, ERROR, "size=2G"),
        (4096, 1000, WARN, "fastdds shm clean"),
    ],
)
def test_judge_shm(total_mib, free_mib, status, size_hint):
    check = judge_shm(total_mib * MIB, free_mib * MIB, 256 * MIB, participants=6)
    assert check.status == status
    assert "6 x 256 MiB = 1.5 GiB" in check.detail
    if size_hint:
        assert size_hint in check.fix


def test_fastdds_profile_variable(tmp_path):
    shipped = REPO_ROOT / "config" / "fastdds_shm.xml"
    assert check_fastdds_profile({}, shipped).status == WARN
    ok = check_fastdds_profile({PROFILE_ENV: str(shipped)}, shipped)
    assert ok.status == OK
    copy = tmp_path / "copy.xml"
    copy.write_bytes(shipped.read_bytes())
    assert "a copy" in check_fastdds_profile({PROFILE_ENV: str(copy)}, shipped).detail
    other = _profile(tmp_path, 4096)
    assert check_fastdds_profile({PROFILE_ENV: str(other)}, shipped).status == WARN
    gone = check_fastdds_profile({PROFILE_ENV: str(tmp_path / "gone")}, shipped)
    assert gone.status == ERROR


@pytest.mark.parametrize(
    ("value", "status"), [(None, OK), ("7", OK), ("150", WARN), ("300", ERROR), ("abc", ERROR)]
)
def test_ros_domain(value, status):
    env = {} if value is None else {"ROS_DOMAIN_ID": value}
    assert check_ros_domain(env).status == status
