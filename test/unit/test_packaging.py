"""The launch file, the parameter file, the console scripts and the nodes agree on names."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context

from gesture_classifier.bringup import ALL_NODES, parse_overrides, write_overrides

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'config' / 'gesture_classifier.yaml'
LAUNCH = REPO / 'launch' / 'gesture_classifier.launch.py'
SETUP = REPO / 'src' / 'gesture_classifier' / 'setup.py'


def test_launch_file_is_valid_python_using_the_shared_node_list():
    tree = ast.parse(LAUNCH.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {'NODES', 'OPTIONAL_NODES', 'IfCondition'} <= names and \
        'generate_launch_description' in {
        f.name for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_every_node_is_a_console_script():
    scripts = dict(re.findall(r"'(\w+) = (gesture_classifier\.nodes\.\w+):main'",
                              SETUP.read_text()))
    assert scripts == ALL_NODES


def test_parameter_file_sections():
    doc = yaml.safe_load(CONFIG.read_text())
    assert set(doc) == {'/**'} | {f'/**/{n}' for n in ALL_NODES}
    assert doc['/**']['ros__parameters']['classes'] == ['thumbs_up', 'thumbs_down']


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


def test_label_pattern_parameter_narrows_and_never_widens(tmp_path):
    from gesture_interfaces.srv import Collect

    from gesture_classifier.nodes.collector import CollectorNode
    ctx = Context()
    rclpy.init(args=['--ros-args', '-p', f'data_dir:={tmp_path}', '-p',
                     'label_pattern:=(thumbs_up|\\.\\./x)'], context=ctx)
    try:
        node = CollectorNode(context=ctx)
        answers = {label: node._on_collect(Collect.Request(label=label), Collect.Response())
                   for label in ('thumbs_up', 'thumbs_down', '../x')}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    assert 'no camera frame' in answers['thumbs_up'].message       # passed both checks
    assert 'label_pattern' in answers['thumbs_down'].message       # narrowed
    assert 'not a safe name' in answers['../x'].message            # never widened
    assert not any(a.success for a in answers.values())
    assert not any(p.name == 'x' for p in tmp_path.parent.rglob('x'))
