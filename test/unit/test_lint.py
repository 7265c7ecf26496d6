"""The code must run on the robot's Python (3.10 on Humble) and ROS 2 Humble."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ('src', 'launch', 'test', 'scripts') for p in (REPO / d).rglob('*.py')]

#: APIs newer than ROS 2 Humble that must not be used (pattern, why).
NEWER_THAN_HUMBLE = [
    (r'(?m)^\s*with\s+rclpy\.init\(', 'rclpy.init() is no context manager on Humble'),
    (r'ros_arguments\s*=', 'launch_ros Node(ros_arguments=...) is newer than Humble'),
    (r'add_post_set_parameters_callback', 'post-set parameter callbacks are newer than Humble'),
    (r'add_pre_set_parameters_callback', 'pre-set parameter callbacks are newer than Humble'),
    (r'Image\([^)]*check_fields', 'check_fields is not a message argument on Humble'),
]


def test_ruff_with_python_310_target():
    ruff = shutil.which('ruff')
    assert ruff, 'ruff is installed by scripts/setup.sh (requirements-dev.txt)'
    r = subprocess.run([ruff, 'check', '--output-format', 'concise', str(REPO)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'target-version = "py310"' in (REPO / 'ruff.toml').read_text()


def test_no_api_newer_than_humble():
    found = []
    for path in SOURCES:
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        for pattern, why in NEWER_THAN_HUMBLE:
            for m in re.finditer(pattern, text):
                line = text.count('\n', 0, m.start()) + 1
                found.append(f'{path.relative_to(REPO)}:{line}: {why}')
    assert not found, '\n'.join(found)
