#!/usr/bin/env bash
# Create or refresh the project virtualenv: torch (CPU wheel first, so nothing pulls CUDA
# wheels), the ROS 2 core wheels, the Python dependencies, event_camera_msgs built from its
# message definition, and evseg_ros itself (editable, so `evseg` and the node executables are in
# the venv's bin/). Where the upstream ROS 2 launch/ros2cli sources sit next to the repository
# (../shared/ros2), also the `ros2` command with `ros2 launch` and colcon, for the launch tests.
# Stamps of the inputs make later runs return in about a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${1:-$root/.venv}"
torch_version="2.13.0"
ros2_src="$root/../shared/ros2"
# ../shared/ros2/README.md: the pure-Python launch system and ros2cli packages, installed
# without dependencies (the PyPI ROS 2 wheels provide them), plus these from PyPI
ros2_packages=(launch launch_xml launch_yaml launch_ros ros2launch ros2cli ros2pkg ros2run ros2topic
               ros2param ros2node rosidl_runtime_py)
ros2_pypi=(osrf-pycommon argcomplete colcon-common-extensions colcon-ros)

python="${PYTHON:-python3}"
stamp_inputs=("$here/requirements.txt" "$here/bootstrap.sh")
digest="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.evseg_bootstrap.sha256"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

# pip's output without its noise: the location warning, and the resolver's complaint that the
# upstream ROS 2 packages need `ament_index_python` (the wheel's distribution is named
# ros-ament-index-python, so pip cannot see it)
pip_filtered() {
    "${pip[@]}" "$@" 2>&1 | grep -v -e "^WARNING: Location" \
        -e "requires ament_index_python, which is not installed" \
        -e "^ERROR: pip's dependency resolver does not currently take into account" || true
}

# evseg_ros itself, editable and without dependencies: a PEP 660 editable install puts the
# console scripts in $venv/bin (setup.py's lib/evseg_ros script folder is for colcon's
# `setup.py install`, where `ros2 run` looks) and leaves share/ to colcon installs.
install_project() {
    local want project_stamp="$venv/.evseg_project.sha256"
    want="$(cat "$root/setup.py" "$root/package.xml" | sha256sum | cut -d' ' -f1)"
    if [[ -f "$project_stamp" && "$(cat "$project_stamp")" == "$want" && -x "$venv/bin/evseg" ]]
    then
        return 0
    fi
    echo "bootstrap: installing evseg_ros (editable) into $venv"
    pip_filtered --no-deps --no-build-isolation -e "$root"
    [[ -x "$venv/bin/evseg" ]] || {
        echo "bootstrap: 'pip install -e $root' did not put evseg into $venv/bin" >&2
        exit 1
    }
    echo "$want" > "$project_stamp"
}

# The interface packages (cmake, into the venv), then ros2 launch / ros2cli from ../shared/ros2
# and colcon: those only serve the launch tests, so they are skipped with one line where the
# sources are absent.
install_interfaces_and_launch_tools() {
    if [[ ! -d "$ros2_src" ]]; then
        bash "$here/build_interfaces.sh" "$venv"
        echo "bootstrap: no ../shared/ros2: no ros2 launch and colcon (the launch tests skip)"
        return 0
    fi
    local src want tools_stamp="$venv/.evseg_ros2_launch.sha256" build folder
    src="$(cd "$ros2_src" && pwd)"
    want="$( (printf '%s\n' "${ros2_packages[@]}" "${ros2_pypi[@]}";
              for folder in "${ros2_packages[@]}"; do cat "$src/$folder/package.xml"; done) \
            | sha256sum | cut -d' ' -f1)"
    bash "$here/build_interfaces.sh" "$venv" "$here/interfaces/event_camera_msgs" \
        "$src/composition_interfaces"
    if [[ -f "$tools_stamp" && "$(cat "$tools_stamp")" == "$want" && -x "$venv/bin/ros2" \
          && -x "$venv/bin/colcon" ]]; then
        return 0
    fi
    echo "bootstrap: installing ros2 launch / ros2cli (from $src) and colcon into $venv"
    # built from a copy: a pip build writes build/ and *.egg-info into its source folder
    build="$(mktemp -d -t evseg-ros2-src.XXXXXX)"
    for folder in "${ros2_packages[@]}"; do
        cp -r "$src/$folder" "$build/$folder"
        rm -rf "$build/$folder/build" "$build/$folder"/*.egg-info
        chmod -R u+w "$build/$folder"
    done
    pip_filtered --no-deps --no-build-isolation "${ros2_packages[@]/#/$build/}"
    rm -rf "$build"
    pip_filtered "${ros2_pypi[@]}"
    "$venv/bin/python" -c "import launch_ros, ros2launch, colcon_ros" || {
        echo "bootstrap: the launch tools failed to install (see pip output above)" >&2
        exit 1
    }
    echo "$want" > "$tools_stamp"
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
    install_interfaces_and_launch_tools
    install_project
    exit 0
fi

need_apt=()
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: Python >= 3.11 is required ($python is $("$python" --version 2>&1))" >&2
    exit 1
}
"$python" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v c++ >/dev/null || need_apt+=(g++)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing ${need_apt[*]} with apt-get"
        apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "bootstrap: missing system packages: ${need_apt[*]}" >&2
        echo "           install them with: sudo apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
fi

start=$(date +%s)
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
echo "bootstrap: installing torch==$torch_version (CPU) into $venv"
pip_filtered "torch==$torch_version"
"$venv/bin/python" -W ignore -c "import torch" || {
    echo "bootstrap: torch failed to install" >&2
    exit 1
}
echo "bootstrap: installing ROS 2 wheels and Python dependencies"
pip_filtered -r "$here/requirements.txt"
"$venv/bin/python" -c "import rclpy, onnxruntime, cv2, rosbags" || {
    echo "bootstrap: dependencies failed to install (see pip output above)" >&2
    exit 1
}
install_interfaces_and_launch_tools
install_project
echo "$digest" > "$stamp"
echo "bootstrap: environment ready in $(( $(date +%s) - start )) s"
