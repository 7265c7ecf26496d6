#!/usr/bin/env bash
# Benchmarks: the nodes against bare in-process references, one table on stdout, raw results in
# bench/results/<UTC time>.json and bench/results/latest.json (see bench/README.md).
#   scripts/bench.sh                      # all sections, about 4 minutes on 2 cores
#   scripts/bench.sh --quick              # shorter windows, about 2 minutes
#   scripts/bench.sh --only classifier    # one section (trainer, classifier, camera, collect, web,
#                                         # startup); repeatable
#   scripts/bench.sh learning [--recipes ...]  # the learning benchmark (bench/learning.py):
#                                         # accuracy on people the model never saw; about an hour
#   scripts/bench.sh int8                 # precision int8 and bf16 on this CPU (bench/int8.py)
# Works from any directory once scripts/setup.sh has run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
set +u  # the colcon setup scripts read unset variables
# shellcheck source=env.sh
. "$root/scripts/env.sh"
set -u
# From the repository root: `python -m` puts the current directory first on sys.path, where
# another `bench` module could otherwise shadow this one.
cd "$root"
if [ "${1:-}" = learning ]; then
  shift
  exec python -m bench.learning "$@"
fi
if [ "${1:-}" = int8 ]; then
  shift
  exec python -m bench.int8 "$@"
fi
exec python -m bench "$@"
