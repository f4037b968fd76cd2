#!/usr/bin/env bash
# Create or refresh the project virtualenv: torch (CPU wheel first, so nothing pulls CUDA
# wheels), the ROS 2 core wheels, the Python dependencies, and event_camera_msgs built from its
# message definition. A stamp of the inputs makes later runs return in well under a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${1:-$root/.venv}"
torch_version="2.13.0"

python="${PYTHON:-python3}"
stamp_inputs=("$here/requirements.txt" "$here/bootstrap.sh")
digest="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.evseg_bootstrap.sha256"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
    bash "$here/build_interfaces.sh" "$venv"
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
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
echo "bootstrap: installing torch==$torch_version (CPU) into $venv"
"${pip[@]}" "torch==$torch_version" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import torch" || { echo "bootstrap: torch failed to install" >&2; exit 1; }
echo "bootstrap: installing ROS 2 wheels and Python dependencies"
"${pip[@]}" -r "$here/requirements.txt" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import rclpy, onnxruntime, cv2, rosbags" || {
    echo "bootstrap: dependencies failed to install (see pip output above)" >&2
    exit 1
}
bash "$here/build_interfaces.sh" "$venv"
echo "$digest" > "$stamp"
echo "bootstrap: environment ready in $(( $(date +%s) - start )) s"
