"""The launch file, the parameter file, the console scripts and the nodes agree on names."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context

from gesture_classifier.tools.bringup import ALL_NODES, parse_overrides, write_overrides

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'config' / 'gesture_classifier.yaml'
LAUNCH = REPO / 'launch' / 'gesture_classifier.launch.py'
SETUP = REPO / 'src' / 'gesture_classifier' / 'setup.py'


def test_launch_file_is_valid_python_using_the_shared_node_list():
    tree = ast.parse(LAUNCH.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {'ALL_NODES', 'IfCondition'} <= names and \
        'generate_launch_description' in {
        f.name for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_every_node_is_a_console_script():
    """Each node's console script is its starter in gesture_classifier.nodes (which sets the
    process defaults before importing the node's module, the one bringup runs)."""
    import gesture_classifier.nodes as nodes
    scripts = dict(re.findall(r"'(\w+) = gesture_classifier\.nodes:(\w+)'", SETUP.read_text()))
    assert scripts == {name: f'start_{name}' for name in ALL_NODES}
    assert all(callable(getattr(nodes, f'start_{name}')) for name in ALL_NODES)
    assert ALL_NODES == {name: f'gesture_classifier.nodes.{name}' for name in ALL_NODES}


def test_parameter_file_sections():
    doc = yaml.safe_load(CONFIG.read_text())
    assert set(doc) == {'/**'} | {f'/**/{n}' for n in ALL_NODES}
    assert doc['/**']['ros__parameters']['classes'] == ['thumbs_up', 'thumbs_down']


@pytest.mark.graph
def test_parameter_file_only_sets_declared_parameters(tmp_path):
    """Construct each node (no spinning) with the real parameter file: every parameter the
    file gives it must be declared by the node, i.e. none is silently ignored."""
    from gesture_classifier.nodes.camera import CameraNode
    from gesture_classifier.nodes.classifier import ClassifierNode
    from gesture_classifier.nodes.collector import CollectorNode
    from gesture_classifier.nodes.trainer import TrainerNode
    from gesture_classifier.nodes.web import WebNode
    classes = {'camera': CameraNode, 'collector': CollectorNode, 'trainer': TrainerNode,
               'classifier': ClassifierNode, 'web': WebNode}
    doc = yaml.safe_load(CONFIG.read_text())
    documented = (REPO / 'docs' / 'parameters.md').read_text()
    overrides = write_overrides({n: {'data_dir': str(tmp_path), 'source': str(tmp_path)}
                                 if n == 'camera' else {'data_dir': str(tmp_path)}
                                 for n in ALL_NODES}, tmp_path)
    for name, cls in classes.items():
        ctx = Context()
        rclpy.init(args=['--ros-args', '--params-file', str(CONFIG), '--params-file',
                         str(overrides)], context=ctx)
        try:
            node = cls(context=ctx)
            declared = set(node._parameters)
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
        wanted = set(doc[f'/**/{name}']['ros__parameters'])
        assert wanted <= declared, f'{name} ignores {wanted - declared}'
        # rclpy's own (use_sim_time, ...) aside, docs/parameters.md names every one
        ours = {p for p in declared if p not in ('use_sim_time', 'start_type_description_service')}
        missing = {p for p in ours if f'`{p}`' not in documented}
        assert not missing, f'docs/parameters.md does not name {name} parameters {missing}'


def test_bringup_overrides_parse_yaml_values():
    assert parse_overrides(['camera.rate=10.0', 'trainer.seed=3', 'camera.loop=false',
                            'camera.source=/dev/video1', '*.task=fingers']) == {
        'camera': {'rate': 10.0, 'loop': False, 'source': '/dev/video1', 'task': 'fingers'},
        'trainer': {'seed': 3, 'task': 'fingers'},
        'collector': {'task': 'fingers'}, 'classifier': {'task': 'fingers'},
        'web': {'task': 'fingers'}}
    with pytest.raises(ValueError, match='unknown node'):
        parse_overrides(['cam.rate=1'])
    with pytest.raises(ValueError, match='NODE.PARAM=VALUE'):
        parse_overrides(['rate=1'])


def _run(coroutine):
    """The value of a service callback coroutine that answers without awaiting (as a
    refused or single-frame collect does; only a burst awaits its recording)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError('the callback awaited: it did not answer at once')


@pytest.mark.graph
def test_label_pattern_parameter_narrows_and_never_widens(tmp_path):
    from gesture_interfaces.srv import Collect

    from gesture_classifier.nodes.collector import CollectorNode
    ctx = Context()
    rclpy.init(args=['--ros-args', '-p', f'data_dir:={tmp_path}', '-p',
                     'label_pattern:=(thumbs_up|\\.\\./x)'], context=ctx)
    try:
        node = CollectorNode(context=ctx)
        answers = {label: _run(node._on_collect(Collect.Request(label=label),
                                                Collect.Response()))
                   for label in ('thumbs_up', 'thumbs_down', '../x')}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    assert 'no camera frame' in answers['thumbs_up'].message       # passed both checks
    assert 'label_pattern' in answers['thumbs_down'].message       # narrowed
    assert 'not a safe name' in answers['../x'].message            # never widened
    assert not any(a.success for a in answers.values())
    assert not any(p.name == 'x' for p in tmp_path.parent.rglob('x'))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def test_the_readme_and_the_docs_link_to_what_exists():
    """Every relative link of README.md and docs/*.md names an existing file, and an anchor a
    heading of that file; the README stays a short page for users."""
    pages = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
    broken = []
    for page in pages:
        text = re.sub(r'(?s)```.*?```', '', page.read_text())
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+:', target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition('#')
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f'{page.name}: {target} (no such file)')
            elif anchor and file.suffix == '.md':
                headings = re.findall(r'(?m)^#+ (.*)$', re.sub(r'(?s)```.*?```', '',
                                                             file.read_text()))
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f'{page.name}: {target} (no such heading)')
    assert not broken, '\n'.join(broken)
    assert len((REPO / 'README.md').read_text().splitlines()) <= 300
