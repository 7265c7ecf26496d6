#!/usr/bin/env bash
# Run the test suite (installs first if needed: scripts/setup.sh --no-demo). Extra arguments go
# to pytest, e.g. scripts/test.sh test/unit -k imaging
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh --no-demo
set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
. scripts/env.sh
set -u
exec python -m pytest "${@:-test}"
