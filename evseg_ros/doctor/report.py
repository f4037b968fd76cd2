"""The doctor's report: every check in table order, which rows a configuration needs, and the
table and JSON they print as.

Only a needed row that is ``missing`` or ``error`` fails the report (exit status 1), so the same
command informs on a laptop and refuses to start a rig whose configuration cannot work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict

from evseg_ros.doctor.camera_checks import (
    check_evk4_camera,
    check_flir_camera,
    check_metavision_sdk,
    check_pyspin,
)
from evseg_ros.doctor.check import ERROR, FAILING, OK, Check, first_line
from evseg_ros.doctor.compute_checks import (
    check_cuda,
    check_engine_cache,
    check_model,
    check_numba,
    check_onnxruntime,
    check_onnxruntime_gpu,
    check_tensorrt,
    check_torch,
)
from evseg_ros.doctor.platform_checks import (
    check_platform,
    check_power_mode,
    check_python,
    read_jetson_info,
)
from evseg_ros.doctor.ros_checks import (
    check_fastdds_profile,
    check_rclpy,
    check_ros_domain,
    check_shm,
)

#: checks every configuration needs (the Python side of the stack)
BASE_NEEDS = ("python", "torch", "onnxruntime", "numba", "rclpy")
#: ``--need`` choices -> the checks that must not be missing or in error
NEEDS: dict[str, tuple[str, ...]] = {
    "gpu": ("cuda",),
    "tensorrt": ("tensorrt", "engine_cache"),
    "evk4": ("metavision_sdk", "evk4_camera"),
    "flir": ("pyspin", "flir_camera"),
    "shm": ("shm",),
    "model": ("model",),
}


def run_checks() -> list[Check]:
    """Every check, in table order; a check that fails itself becomes an ``error`` row."""
    jetson = read_jetson_info() is not None
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("platform", check_platform),
    ]
    if jetson:
        steps.append(("power_mode", check_power_mode))
    steps += [
        ("torch", check_torch),
        ("cuda", check_cuda),
        ("tensorrt", lambda: check_tensorrt(jetson=jetson)),
        ("engine_cache", check_engine_cache),
        ("onnxruntime", check_onnxruntime),
        ("onnxruntime_gpu", check_onnxruntime_gpu),
        ("numba", check_numba),
        ("rclpy", check_rclpy),
        ("fastdds_profile", check_fastdds_profile),
        ("shm", check_shm),
        ("metavision_sdk", check_metavision_sdk),
        ("evk4_camera", check_evk4_camera),
        ("pyspin", check_pyspin),
        ("flir_camera", check_flir_camera),
        ("model", check_model),
        ("ros_domain", check_ros_domain),
    ]
    return [guarded(name, step) for name, step in steps]


def guarded(name: str, step: Callable[[], Check]) -> Check:
    """``step()``, or an ``error`` row saying how the check itself broke."""
    try:
        return step()
    except Exception as err:
        detail = f"the check itself failed: {type(err).__name__}: {first_line(err)}"
        return Check(name, ERROR, detail, "fix the install of the module the error names")


def needed_checks(needs: Sequence[str]) -> list[str]:
    """Names of the checks that ``needs`` (``--need`` choices) make mandatory."""
    names = list(BASE_NEEDS)
    for need in needs:
        names += [name for name in NEEDS[need] if name not in names]
    return names


def failed_checks(checks: Sequence[Check], needs: Sequence[str]) -> list[Check]:
    """The needed checks that came out ``missing`` or ``error``."""
    needed = set(needed_checks(needs))
    return [check for check in checks if check.name in needed and check.status in FAILING]


def format_table(checks: Sequence[Check], needs: Sequence[str]) -> str:
    """The checks as an aligned table, the fix under each problem, then the verdict."""
    needed = set(needed_checks(needs))
    width = max(len(check.name) for check in checks) + 2
    lines = [f"  {'check':<{width}}{'status':<9}detail"]
    for check in checks:
        mark = "*" if check.name in needed else " "
        lines.append(f"{mark} {check.name:<{width}}{check.status:<9}{check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"{'':<{width + 11}}fix: {check.fix}")
    failed = failed_checks(checks, needs)
    wanted = "python deps" + "".join(f" + {need}" for need in needs)
    if failed:
        names = ", ".join(check.name for check in failed)
        lines.append(f"\n* needed ({wanted}): missing or broken: {names}")
    else:
        lines.append(f"\n* needed ({wanted}): all present")
    return "\n".join(lines)




def exit_code(checks: Sequence[Check], needs: Sequence[str]) -> int:
    """1 when a needed check failed, else 0: what lets a unit file refuse to start the rig."""
    return 1 if failed_checks(checks, needs) else 0


def format_json(checks: Sequence[Check], needs: Sequence[str]) -> str:
    """Every row, the needed names, the failed ones and the exit status, as indented JSON."""
    return json.dumps({
        "checks": [asdict(check) for check in checks],
        "needed": needed_checks(needs),
        "failed": [check.name for check in failed_checks(checks, needs)],
        "exit_code": exit_code(checks, needs),
    }, indent=2)
