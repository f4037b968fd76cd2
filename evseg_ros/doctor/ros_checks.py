"""ROS 2 and its transport: rclpy and the RMW it loads, the Fast DDS shared-memory profile,
``/dev/shm`` against that profile's segment size, and the DDS domain.

Full frames between the rig's nodes go through Fast DDS shared memory; a 64 MiB container
``/dev/shm`` crashes it at the first frame, and a profile the processes do not load sends those
frames over UDP instead. The environment and the files are parameters, so tests pass their own.
"""

from __future__ import annotations

import math
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from evseg_ros.doctor.check import (
    ERROR,
    GIB,
    MIB,
    MISSING,
    OK,
    WARN,
    Check,
    first_line,
    gib,
    package_path,
)

SHM_DIR = Path("/dev/shm")
SHM_PROFILE = "config/fastdds_shm.xml"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
#: DDS participants of the launched rig that each map a shared-memory segment: the four nodes,
#: plus RViz and one recorder or ``ros2`` command beside them
RIG_PARTICIPANTS = 6


def check_rclpy(environ: Mapping[str, str] | None = None) -> Check:
    """rclpy and the RMW it loads: the shared-memory profile is a Fast DDS one."""
    environ = os.environ if environ is None else environ
    try:
        import rclpy  # noqa: PLC0415

        rmw = rclpy.get_rmw_implementation_identifier()
    except ImportError as err:
        fix = (
            "source /opt/ros/<distro>/setup.bash (or the workspace's install/setup.bash); "
            "without a ROS install, scripts/bootstrap.sh installs the PyPI ROS wheels"
        )
        return Check("rclpy", MISSING, f"not importable ({first_line(err)})", fix)
    chosen = environ.get("RMW_IMPLEMENTATION")
    distro = environ.get("ROS_DISTRO", "unset")
    detail = (
        f"RMW {rmw} (RMW_IMPLEMENTATION {chosen or 'unset: the default'}), ROS_DISTRO {distro}"
    )
    if "fastrtps" not in rmw and "fastdds" not in rmw:
        fix = "export RMW_IMPLEMENTATION=rmw_fastrtps_cpp (config/fastdds_shm.xml is Fast DDS only)"
        return Check("rclpy", WARN, detail + ": the shared-memory profile does not apply", fix)
    return Check("rclpy", OK, detail)


def check_fastdds_profile(
    environ: Mapping[str, str] | None = None, shipped: Path | None = None
) -> Check:
    """``FASTDDS_DEFAULT_PROFILES_FILE`` names the shipped shared-memory profile (or a copy)."""
    environ = os.environ if environ is None else environ
    shipped = shipped or package_path(SHM_PROFILE)
    value = environ.get(PROFILE_ENV, "")
    fix = f"export {PROFILE_ENV}={shipped}"
    if not value:
        detail = (
            f"{PROFILE_ENV} unset: ros2 launch sets it for the rig's nodes, other processes "
            "(evseg record, ros2 topic) use UDP for large images"
        )
        return Check("fastdds_profile", WARN, detail, fix)
    named = Path(value).expanduser()
    if not named.is_file():
        return Check("fastdds_profile", ERROR, f"{PROFILE_ENV}={value}: no such file", fix)
    if named.resolve() == shipped.resolve():
        return Check("fastdds_profile", OK, f"{named} (the shipped profile)")
    if shipped.is_file() and named.read_bytes() == shipped.read_bytes():
        return Check("fastdds_profile", OK, f"{named} (a copy of {SHM_PROFILE})")
    return Check("fastdds_profile", WARN, f"{named}: not the shipped {SHM_PROFILE}",
                 f"check its shared-memory segment, or {fix}")


def shm_segment_bytes(profile: Path) -> int:
    """The largest ``segment_size`` of the SHM transports in a Fast DDS profile.

    Raises:
        ValueError: the file is unreadable, not XML, or has no SHM segment size.
    """
    try:
        root = ET.parse(profile).getroot()
    except (OSError, ET.ParseError) as err:
        msg = f"cannot read {profile}: {err}"
        raise ValueError(msg) from err
    sizes = []
    for descriptor in root.iter():
        if not descriptor.tag.endswith("transport_descriptor"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in descriptor}
        if fields.get("type", "").upper() == "SHM" and fields.get("segment_size", "").isdigit():
            sizes.append(int(fields["segment_size"]))
    if not sizes:
        msg = f"{profile}: no SHM transport_descriptor with a segment_size"
        raise ValueError(msg)
    return max(sizes)


def judge_shm(total: int, free: int, segment: int, participants: int = RIG_PARTICIPANTS) -> Check:
    """Whether a shared-memory filesystem of ``total`` / ``free`` bytes holds the rig's segments.

    Each DDS participant maps a segment of its own, so the rig needs ``participants`` of them.
    """
    needed = segment * participants
    size_gib = max(1, math.ceil(needed / GIB))
    detail = (
        f"{gib(total)}, {gib(free)} free; the rig maps up to {participants} x "
        f"{segment / MIB:.0f} MiB = {gib(needed)}"
    )
    fix = (
        f"sudo mount -o remount,size={size_gib}G /dev/shm (and in /etc/fstab: tmpfs /dev/shm "
        f"tmpfs defaults,size={size_gib}G 0 0); in Docker: --shm-size={size_gib}g"
    )
    if total < needed:
        return Check("shm", ERROR, detail + ": too small", fix)
    if free < needed:
        stale = "fastdds shm clean (removes segments left by processes that died), or " + fix
        return Check("shm", WARN, detail + ": not enough free", stale)
    return Check("shm", OK, detail)


def check_shm(
    shm_dir: Path = SHM_DIR, profile: Path | None = None, participants: int = RIG_PARTICIPANTS
) -> Check:
    """``/dev/shm`` against the segment size of the shipped shared-memory profile."""
    profile = profile or package_path(SHM_PROFILE)
    try:
        segment = shm_segment_bytes(profile)
    except ValueError as err:
        return Check("shm", ERROR, str(err), f"restore {SHM_PROFILE}")
    try:
        usage = shutil.disk_usage(shm_dir)
    except OSError as err:
        return Check("shm", MISSING, f"{shm_dir}: {first_line(err)}",
                     f"mount a tmpfs on {shm_dir} (Fast DDS shared memory lives there)")
    return judge_shm(usage.total, usage.free, segment, participants)


def check_ros_domain(environ: Mapping[str, str] | None = None) -> Check:
    """``ROS_DOMAIN_ID`` (information): rigs on one network must not share a domain."""
    environ = os.environ if environ is None else environ
    value = environ.get("ROS_DOMAIN_ID", "")
    discovery = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "unset")
    tail = f"; ROS_AUTOMATIC_DISCOVERY_RANGE {discovery}"
    if not value:
        return Check("ros_domain", OK, "ROS_DOMAIN_ID unset: domain 0" + tail)
    if not value.isdigit() or int(value) > 232:
        return Check("ros_domain", ERROR, f"ROS_DOMAIN_ID={value!r}: not 0..232" + tail,
                     "set ROS_DOMAIN_ID to 0..101")
    if int(value) > 101:
        return Check("ros_domain", WARN, f"ROS_DOMAIN_ID={value}" + tail,
                     "use 0..101: higher domains can collide with Linux ephemeral ports")
    return Check("ros_domain", OK, f"ROS_DOMAIN_ID={value}" + tail)

