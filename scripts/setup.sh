#!/usr/bin/env bash
# Install everything on a machine without a ROS install (Debian 12 / Python >= 3.10, registries
# only) and run the demo:
#   1. .venv with the ROS 2 Kilted wheels, colcon, torch, torchvision, OpenCV (requirements-dev.txt)
#   2. point the wheels' CMake exports at this venv (scripts/fix_wheel_cmake_paths.py)
#   3. colcon build of src/gesture_interfaces and src/gesture_classifier
#   4. the demo (skip with --no-demo)
# Idempotent: steps whose inputs did not change are skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
run_demo=1
[ "${1:-}" = "--no-demo" ] && run_demo=0
python="${PYTHON:-python3}"

say() { printf '\n== %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

req_hash="$(sha256sum requirements-dev.txt | cut -c1-16)"
if [ "$(cat .venv/.requirements-hash 2>/dev/null)" != "$req_hash" ]; then
  say "installing ROS 2 wheels, colcon, torch, torchvision, OpenCV into .venv (a few minutes)"
  # The machine's pip config names local index mirrors that may be absent; their warnings are noise.
  pip install --disable-pip-version-check -q -r requirements-dev.txt 2>&1 \
    | grep -v -e "is ignored: it is neither a file nor a directory" || true
  pip check >/dev/null 2>&1 || true
  python -c "import rclpy, torch, torchvision, cv2, yaml, tqdm" \
    || { echo "setup: the Python packages did not install; see the pip output above" >&2; exit 1; }
  python scripts/fix_wheel_cmake_paths.py
  echo "$req_hash" > .venv/.requirements-hash
fi

src_hash="$(find src -type f \( -name '*.msg' -o -name '*.srv' -o -name '*.action' -o \
  -name 'CMakeLists.txt' -o -name 'package.xml' -o -name 'setup.py' -o -name 'setup.cfg' \) \
  -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
if [ "$(cat install/.build-hash 2>/dev/null)" != "$src_hash" ] || [ ! -f install/setup.bash ]; then
  say "building the workspace with colcon"
  rm -rf build install log
  CMAKE_PREFIX_PATH="$VIRTUAL_ENV" AMENT_PREFIX_PATH="$VIRTUAL_ENV" \
    colcon --log-base log build --symlink-install 2>&1 \
    | grep -v "doesn't contain any 'local_setup" \
    || true
  [ -f install/gesture_interfaces/share/gesture_interfaces/package.xml ] && \
    [ -f install/gesture_classifier/share/gesture_classifier/package.xml ] \
    || { echo "setup: colcon build failed (see log/latest_build)" >&2; exit 1; }
  echo "$src_hash" > install/.build-hash
fi

set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
. scripts/env.sh
set -u
if [ "$run_demo" = 1 ]; then
  say "running the demo (collect -> train -> classify on real photos)"
  export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 1 ))}"
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  demo
fi
