#!/usr/bin/env bash
# Install everything on a machine without a ROS install (Debian 12 / Python >= 3.10, registries
# only) and run the demo:
#   1. .venv-ml with torch, torchvision, OpenCV, ONNX Runtime (requirements-ml.txt), shared by
#      the distributions, and a venv with the ROS 2 wheels (Kilted; GC_ROS=jazzy for Jazzy),
#      colcon and the test tools (requirements-dev.txt / requirements-jazzy.txt) that sees it
#   2. point the wheels' CMake exports at this venv (scripts/fix_wheel_cmake_paths.py)
#   3. colcon build of src/gesture_interfaces and src/gesture_classifier, then `ros2 launch` and
#      the `ros2` command line from ../shared/ros2-tools (the wheels have neither)
#   4. the demo (skip with --no-demo)
#   0. before all that: Debian's chromium for the browser tests, when missing (apt, as root)
# Idempotent: steps whose inputs did not change are skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=distro.sh
. scripts/distro.sh
# A shell that sourced env.sh of another set-up (e.g. the other distribution) must not make
# rclpy skip loading this venv's libraries.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
run_demo=1
[ "${1:-}" = "--no-demo" ] && run_demo=0
python="${PYTHON:-python3}"
ML_PTH=gesture_classifier_ml.pth

say() { printf '\n== %s\n' "$*"; }
site_packages() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
# True when the venv $1 exists but was made with another Python version than $python.
other_python() { [ -x "$1/bin/python" ] && [ "$(py_version "$1/bin/python")" != "$(py_version "$python")" ]; }
# pip install -r $2 with the venv $1's pip. The machine's pip config names local index mirrors
# that may be absent; their warnings are noise.
pip_install() {
  "$1/bin/pip" install --disable-pip-version-check -q -r "$2" 2>&1 \
    | grep -v -e "is ignored: it is neither a file nor a directory" || true
}

# 0. Debian's chromium for the web page's browser tests (Playwright drives it; a browser
# download with `playwright install` does not work on these machines). Only when missing; apt
# needs root, so anyone else gets the command to run and those tests skip.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium with apt (browser tests of the web page)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 || \
      { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || \
      echo "setup: warning: apt-get install chromium failed; the browser tests will skip" >&2
  else
    echo "setup: chromium is missing and this is not root: run 'sudo apt-get install -y" \
      "chromium' for the web page's browser tests (they skip without it)" >&2
  fi
fi

# 1a. The model packages, once for all distributions (several GB: the CUDA build of torch).
if other_python "$GC_ML_VENV"; then
  say "recreating $GC_ML_VENV for Python $(py_version "$python")"
  rm -rf "$GC_ML_VENV"
fi
if [ ! -x "$GC_ML_VENV/bin/python" ]; then
  say "creating $GC_ML_VENV (torch, torchvision, OpenCV, ONNX Runtime)"
  "$python" -m venv "$GC_ML_VENV"
fi
ml_hash="$(sha256sum < requirements-ml.txt | cut -c1-16)"
if [ "$(cat "$GC_ML_VENV/.requirements-hash" 2>/dev/null)" != "$ml_hash" ]; then
  say "installing torch, torchvision, OpenCV, ONNX Runtime into $GC_ML_VENV (a few minutes, about 6 GB)"
  free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1048576 ))
  [ "$free_gb" -ge 7 ] || printf 'setup: warning: %s GB free here; the model packages take about 6 GB and\n  the tests about 0.5 GB more: pip or the tests may fail with "No space left on device"\n' \
    "$free_gb" >&2
  pip_install "$GC_ML_VENV" requirements-ml.txt
  "$GC_ML_VENV/bin/python" -c "import torch, torchvision, cv2, PIL, yaml, tqdm, onnx, onnxruntime" \
    || { echo "setup: the model packages did not install; see the pip output above" >&2; exit 1; }
  echo "$ml_hash" > "$GC_ML_VENV/.requirements-hash"
fi
ml_site="$(cd "$(site_packages "$GC_ML_VENV")" && pwd)"

# 1b. The distribution's venv. One made before the model packages were shared holds its own
# copy of torch (several GB) that would shadow the shared one: make it again.
# A venv of another Python version cannot use .venv-ml's packages either.
if other_python "$GC_VENV" || \
   { [ -x "$GC_VENV/bin/python" ] && [ ! -f "$(site_packages "$GC_VENV")/$ML_PTH" ]; }; then
  say "recreating $GC_VENV: it predates the shared $GC_ML_VENV or is for another Python"
  rm -rf "$GC_VENV"
fi
if [ ! -x "$GC_VENV/bin/python" ]; then
  say "creating $GC_VENV (ROS 2 $GC_ROS)"
  "$python" -m venv "$GC_VENV"
fi
# A .pth line is a directory that `site` appends to sys.path at start-up, after the venv's own.
echo "$ml_site" > "$(site_packages "$GC_VENV")/$ML_PTH"
# shellcheck disable=SC1091
. "$GC_VENV/bin/activate"

req_hash="$(cat "$GC_REQ" requirements-common.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$GC_VENV/.requirements-hash" 2>/dev/null)" != "$req_hash" ]; then
  say "installing ROS 2 $GC_ROS wheels, colcon and the test tools into $GC_VENV (a minute or two)"
  pip_install "$GC_VENV" "$GC_REQ"
  python -c "import rclpy, torch, torchvision, cv2, yaml, tqdm" \
    || { echo "setup: the Python packages did not install; see the pip output above" >&2; exit 1; }
  python scripts/fix_wheel_cmake_paths.py
  echo "$req_hash" > "$GC_VENV/.requirements-hash"
fi

src_hash="$( (echo "$req_hash"; find src -type f \( -name '*.msg' -o -name '*.srv' -o \
  -name '*.action' -o -name 'CMakeLists.txt' -o -name 'package.xml' -o -name 'setup.py' -o \
  -name 'setup.cfg' \) -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)"
if [ "$(cat "$GC_INSTALL/.build-hash" 2>/dev/null)" != "$src_hash" ] || \
   [ ! -f "$GC_INSTALL/setup.bash" ]; then
  say "building the workspace with colcon ($GC_INSTALL)"
  rm -rf "$GC_BUILD" "$GC_INSTALL" "$GC_LOG"
  # make -jN without colcon's default load limit (-lN): on a machine other jobs keep busy, the
  # limit would run the interface packages' many compiles one at a time.
  MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}" CMAKE_PREFIX_PATH="$VIRTUAL_ENV" \
    AMENT_PREFIX_PATH="$VIRTUAL_ENV" colcon --log-base "$GC_LOG" build --symlink-install --build-base "$GC_BUILD" \
      --install-base "$GC_INSTALL" 2>&1 | grep -v "doesn't contain any 'local_setup" || true
  [ -f "$GC_INSTALL/gesture_interfaces/share/gesture_interfaces/package.xml" ] && \
    [ -f "$GC_INSTALL/gesture_classifier/share/gesture_classifier/package.xml" ] \
    || { echo "setup: colcon build failed (see $GC_LOG/latest_build)" >&2; exit 1; }
  echo "$src_hash" > "$GC_INSTALL/.build-hash"
fi

set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
. scripts/env.sh
set -u

# 3b. `ros2 launch` and the `ros2` command line (development and CI machines only: a robot has
# them from its ROS install). The PyPI wheels lack them; ../shared/ros2-tools holds their
# unchanged sources and installs them into this venv (idempotent, 0.3 s when up to date).
tools="$root/../shared/ros2-tools/install.sh"
if [ -x "$tools" ]; then
  "$tools" "$GC_ROS" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  command -v ros2 >/dev/null || { echo "setup: ros2-tools did not install (see above)" >&2; exit 1; }
else
  echo "setup: $tools not found: no 'ros2' command line here; the tests of the launch file" \
    "and the README's ros2 lines will skip" >&2
fi
if [ "$run_demo" = 1 ]; then
  say "running the demo (collect -> train -> classify on real photos)"
  export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 1 ))}"
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  # On the development and CI machines the genuine ImageNet weights cannot be had; the
  # ImageNet-like stand-in beside the repository shows the pretrained path (the demo says so).
  standin="$root/../shared/models/resnet18_imagenet_standin.pth"
  if [ -f "$standin" ]; then demo --initial-weights "$(cd "$(dirname "$standin")" && pwd)/$(basename "$standin")"
  else demo; fi
fi
