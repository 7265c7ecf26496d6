#!/usr/bin/env bash
# Run the test suite against each ROS 2 distribution in GC_ROS_DISTROS (default: "kilted
# jazzy", both from PyPI wheels), installing first where needed (scripts/setup.sh --no-demo).
# Extra arguments go to pytest, e.g.  GC_ROS_DISTROS=kilted scripts/test.sh test/unit -k imaging
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
status=0
for distro in ${GC_ROS_DISTROS:-kilted jazzy}; do
  printf '\n======== ROS 2 %s ========\n' "$distro"
  GC_ROS="$distro" scripts/setup.sh --no-demo
  (
    export GC_ROS="$distro"
    set +u
    # shellcheck disable=SC1091
    . scripts/env.sh
    set -u
    python -m pytest "${@:-test}"
  ) || status=$?
done
exit "$status"
