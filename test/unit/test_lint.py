"""The code must run on the robot's Python (3.10 on Humble) and ROS 2 Humble, keep to its
layers (.importlinter) and do nothing when imported."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_imports_keep_to_the_layers():
    """tools > nodes > web > ros > core; no ROS or aiohttp in the core; nothing imports the
    nodes or the tools (.importlinter)."""
    lint_imports = shutil.which('lint-imports')
    assert lint_imports, 'import-linter is installed by scripts/setup.sh (requirements-common.txt)'
    r = subprocess.run([lint_imports, '--config', str(REPO / '.importlinter')],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'broken' in r.stdout and ' 0 broken' in r.stdout


#: Variables the entry points set (gesture_classifier.ros.runtime.set_process_defaults).
PROCESS_DEFAULTS = ('OMP_WAIT_POLICY', 'FASTDDS_DEFAULT_PROFILES_FILE',
                    'FASTRTPS_DEFAULT_PROFILES_FILE')

IMPORT_ALL = """
import ast, importlib, json, os, pkgutil
from pathlib import Path
import gesture_classifier

def module_level(body):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            yield from module_level(node.body + getattr(node, 'orelse', [])
                                    + [x for h in getattr(node, 'handlers', []) for x in h.body])

# What the libraries do when imported is theirs (OpenCV extends LD_LIBRARY_PATH, torchvision
# sets TORCHINDUCTOR_CACHE_DIR): import every library the package imports first.
for path in Path(gesture_classifier.__file__).parent.rglob('*.py'):
    for node in module_level(ast.parse(path.read_text()).body):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if node.level == 0 and node.module else [])
        for name in names:
            if not name.startswith('gesture_classifier'):
                try:
                    importlib.import_module(name)
                except ImportError:  # optional (diagnostic_updater, tensorrt): a fallback
                    pass
before = dict(os.environ)
names = [m.name for m in pkgutil.walk_packages(gesture_classifier.__path__, 'gesture_classifier.')]
for name in names:
    importlib.import_module(name)
after = dict(os.environ)
changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
           if before.get(k) != after.get(k)}
print(json.dumps({'modules': names, 'changed': changed}))
"""


def test_importing_any_module_changes_nothing_in_the_environment():
    """Importing every module (in a fresh interpreter, without the variables the entry points
    set) leaves os.environ as it was: environment defaults belong in main()."""
    import json
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_DEFAULTS}
    r = subprocess.run([sys.executable, '-c', IMPORT_ALL], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out['modules']) > 30 and 'gesture_classifier.nodes.trainer' in out['modules']
    assert out['changed'] == {}, out['changed']


def test_the_console_scripts_of_the_nodes_set_the_defaults_before_torch_loads():
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: the nodes' console scripts
    (gesture_classifier.nodes) must not import torch before they set it."""
    code = ('import sys, gesture_classifier.nodes; '
            'print("torch" in sys.modules, "gesture_classifier.core.training" in sys.modules)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ['False', 'False']


@pytest.mark.parametrize('node', ['camera', 'collector', 'web'])
def test_the_nodes_that_handle_no_model_start_without_torch(node):
    """The camera, the collector and the web node never run the network: importing torch
    would cost each about 6 s of CPU and 0.8 GB at start (core.imagefiles, not core.dataset,
    for files; core.evaluation only when figures are converted)."""
    code = f'import sys, gesture_classifier.nodes.{node}; print("torch" in sys.modules)'
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ['False']
