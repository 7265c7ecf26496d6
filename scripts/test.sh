#!/usr/bin/env bash
# Run the test suite against each ROS 2 distribution in GC_ROS_DISTROS (default: "kilted
# jazzy", both from PyPI wheels), installing first where needed (scripts/setup.sh --no-demo).
# Without arguments the whole suite runs on the first distribution and everything but
# test/core (plain Python, no ROS: it does not depend on the distribution) on the others.
# Extra arguments go to pytest on each, e.g.
#   GC_ROS_DISTROS=kilted scripts/test.sh -m "not graph"     # the fast tier
#   scripts/test.sh test/integration/test_web.py -k token
#
# The other distributions set up in the background while the first one's tests run (set-up is
# mostly downloads and unpacking; it overlaps test/core, which starts no ROS graph); their
# tests run after the first one's, one distribution at a time, with their own ROS_DOMAIN_ID.
# GC_TEST_SIDE_BY_SIDE=1 runs their tests in the background too: faster on an idle 2-core
# machine (about 15 minutes against 22), but two ROS graphs at once on 2 cores made timing
# failures likelier (CI, 2026-12-07: docs/testing.md). GC_TEST_SERIAL=1 sets up each
# distribution only when its turn comes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
read -r -a distros <<< "${GC_ROS_DISTROS:-kilted jazzy}"
domain_base=$(( RANDOM % 100 ))

# run_distro INDEX DISTRO [set-up]: set up DISTRO (unless the third argument is "no"), then
# run its tests with their own ROS domain.
run_distro() {
  local index=$1 distro=$2 args
  if [ "${3:-yes}" != no ]; then
    printf '\n======== ROS 2 %s ========\n' "$distro"
    GC_ROS="$distro" scripts/setup.sh --no-demo || return
  fi
  if [ "${#extra[@]}" -gt 0 ]; then args=("${extra[@]}")
  elif [ "$index" = 0 ]; then args=(test)
  else args=(test --ignore=test/core)
  fi
  (
    export GC_ROS="$distro"
    export GC_TEST_ROS_DOMAIN_ID=$(( (domain_base + index) % 100 + 1 ))
    set +u
    # shellcheck disable=SC1091
    . scripts/env.sh
    set -u
    python -m pytest "${args[@]}"
  )
}

# run_others: the distributions after the first, one after the other; the first failure's
# status (every one runs).
run_others() {
  local i status=0
  for (( i = 1; i < ${#distros[@]}; i++ )); do
    run_distro "$i" "${distros[$i]}" || status=$?
  done
  return "$status"
}

# setup_others: set up the distributions after the first (a failure stops at once).
setup_others() {
  local i
  for (( i = 1; i < ${#distros[@]}; i++ )); do
    printf '\n======== ROS 2 %s ========\n' "${distros[$i]}"
    GC_ROS="${distros[$i]}" scripts/setup.sh --no-demo || return
  done
}

extra=("$@")
status=0
if [ "${#distros[@]}" -lt 2 ] || [ "${GC_TEST_SERIAL:-0}" = 1 ]; then
  run_distro 0 "${distros[0]}" || status=$?
  run_others || status=$?
  exit "$status"
fi

# The first distribution's set-up alone: it makes the shared model venv (.venv-ml) and
# installs chromium, which the others then find.
printf '\n======== ROS 2 %s ========\n' "${distros[0]}"
GC_ROS="${distros[0]}" scripts/setup.sh --no-demo
log="$(mktemp "${TMPDIR:-/tmp}/gc-test-others.XXXXXX")"
if [ "${GC_TEST_SIDE_BY_SIDE:-0}" = 1 ]; then
  background=run_others what='set-up and tests'
else
  background=setup_others what='set-up'
fi
# Job control for this one job: it gets a process group of its own (to stop it as a whole)
# and keeps SIGINT, which a background job of a script otherwise ignores.
set -m
"$background" > "$log" 2>&1 &
others=$!
set +m
stop_others() {
  kill -INT -- "-$others" 2>/dev/null || true
  wait "$others" 2>/dev/null || true
  rm -f "$log"
}
trap 'stop_others; exit 130' INT TERM
printf '(%s: %s in the background; the output follows this run'"'"'s)\n' \
  "${distros[*]:1}" "$what"
run_distro 0 "${distros[0]}" no || status=$?
printf '\n(waiting for %s)\n' "${distros[*]:1}"
setup_status=0
wait "$others" || setup_status=$?
trap - INT TERM
cat "$log"
rm -f "$log"
if [ "$background" = run_others ]; then
  [ "$setup_status" = 0 ] || status=$setup_status
  exit "$status"
fi
[ "$setup_status" = 0 ] || exit "$setup_status"
for (( i = 1; i < ${#distros[@]}; i++ )); do
  run_distro "$i" "${distros[$i]}" no || status=$?
done
exit "$status"
