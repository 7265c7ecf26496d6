#!/usr/bin/env bash
# Run the test suite against each ROS 2 distribution in GC_ROS_DISTROS (default: "kilted
# jazzy", both from PyPI wheels), installing first where needed (scripts/setup.sh --no-demo).
# Without arguments the whole suite runs on the first distribution and everything but
# test/core (plain Python, no ROS: it does not depend on the distribution) on the others.
# Extra arguments go to pytest on each, e.g.
#   GC_ROS_DISTROS=kilted scripts/test.sh -m "not graph"     # the fast tier
#   scripts/test.sh test/integration/test_web.py -k token
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
status=0
first=1
for distro in ${GC_ROS_DISTROS:-kilted jazzy}; do
  printf '\n======== ROS 2 %s ========\n' "$distro"
  GC_ROS="$distro" scripts/setup.sh --no-demo
  if [ "$#" -gt 0 ]; then args=("$@")
  elif [ "$first" = 1 ]; then args=(test)
  else args=(test --ignore=test/core)
  fi
  first=0
  (
    export GC_ROS="$distro"
    set +u
    # shellcheck disable=SC1091
    . scripts/env.sh
    set -u
    python -m pytest "${args[@]}"
  ) || status=$?
done
exit "$status"
