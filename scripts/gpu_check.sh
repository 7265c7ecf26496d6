#!/usr/bin/env bash
# One-shot GPU check (issue 22, item 8): on a machine with CUDA, in at most 5 minutes and
# without network access, run the CUDA / FP16 / TensorRT tests of the core and a short bench
# (bench/gpu.py: per-frame p50 / p99 of each backend and precision through Predictor, the bare
# network eager and as a CUDA graph, training images/s), printing one table. On a machine
# without CUDA it says so and exits 0.
#
#   scripts/gpu_check.sh [WHEEL_OR_FOLDER ...]
#
# Uses the Python of .venv-ml (else $GC_PYTHON, else python3) and what is installed there. Wheels
# passed (files, or folders of *.whl: e.g. onnxruntime-gpu, tensorrt, pytest) are installed
# offline (--no-index) into a throw-away venv over that Python's packages. Results: the table
# on stdout, the JSON in ${GC_GPU_OUT:-/tmp}/gpu_check.json, the test log beside it.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${GC_PYTHON:-}"
[ -z "$py" ] && [ -x .venv-ml/bin/python ] && py=.venv-ml/bin/python
[ -z "$py" ] && py=python3
out="${GC_GPU_OUT:-/tmp}"
mkdir -p "$out"
deadline=$(( $(date +%s) + 290 ))
left() { echo $(( deadline - $(date +%s) )); }

if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no usable CUDA device here ($py: torch missing or torch.cuda.is_available()" \
    "is False); nothing to check"
  exit 0
fi

# wheels passed: a throw-away venv that sees the Python's own packages, offline installs only
wheels=()
for arg in "$@"; do
  if [ -d "$arg" ]; then wheels+=("$arg"/*.whl); else wheels+=("$arg"); fi
done
if [ "${#wheels[@]}" -gt 0 ]; then
  venv="$(mktemp -d)/venv"
  "$py" -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --no-index --no-deps --disable-pip-version-check "${wheels[@]}" \
    || echo "gpu_check: warning: some wheels did not install (see above); going on" >&2
  py="$venv/bin/python"
fi
export PYTHONPATH="$root/src/gesture_classifier${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY=PASSIVE

"$py" - <<'PY'
import importlib.util, torch
print('gpu_check:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA',
      torch.version.cuda)
for m in ('onnxruntime', 'tensorrt', 'pytest'):
    spec = importlib.util.find_spec(m)
    extra = ''
    if m == 'onnxruntime' and spec:
        import onnxruntime as ort
        extra = f' {ort.__version__} {ort.get_available_providers()}'
    print(f'gpu_check: {m}: {"yes" if spec else "no"}{extra}')
PY

# 1. the CUDA / FP16 / TensorRT tests of the core (no ROS needed): about a minute
tests_status="not run (pytest is not installed: pass its wheel)"
if "$py" -c 'import pytest' 2>/dev/null; then
  timeout "$(( $(left) > 150 ? 150 : $(left) ))" "$py" -m pytest -q -p no:cacheprovider \
    -o addopts= test/core/test_backends.py test/core/test_preprocess.py \
    test/core/test_inference.py -k 'cuda or fp16 or tensorrt or auto or graph or binding' \
    > "$out/gpu_check_tests.log" 2>&1
  rc=$?
  tests_status="$(tail -1 "$out/gpu_check_tests.log") (exit $rc; log $out/gpu_check_tests.log)"
fi

# 2. the short bench: one table
timeout "$(( $(left) > 20 ? $(left) : 20 ))" "$py" -m bench.gpu --frames 200 \
  --json "$out/gpu_check.json"
bench_rc=$?
echo
echo "gpu_check: tests: $tests_status"
echo "gpu_check: bench exit $bench_rc; JSON in $out/gpu_check.json"
exit 0
