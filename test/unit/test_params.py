"""The task parameters every node declares (ros.params.declare_task) on a real rclpy node:
``classes`` grows at run time (append-only, kept in classes.yaml, used at the next start),
and what cannot be added is refused with the reason, changing nothing (issue 19, item 10)."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from gesture_classifier.core.tasks import Task, read_saved_classes, save_classes
from gesture_classifier.ros.params import declare_task

pytestmark = pytest.mark.graph

CLASSES = ['thumbs_up', 'thumbs_down']


@pytest.fixture
def make_node(tmp_path):
    """make_node(**declare_task options) -> (node, task, the tasks on_classes got)."""
    ctx = Context()
    rclpy.init(args=[], context=ctx)
    nodes = []

    def make(**options):
        node = Node(f'params_probe_{len(nodes)}', context=ctx, parameter_overrides=[
            Parameter('data_dir', value=str(tmp_path)), Parameter('classes', value=CLASSES)])
        nodes.append(node)
        followed: list[Task] = []
        task = declare_task(node, on_classes=followed.append, **options)
        return node, task, followed
    yield make
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def set_classes(node: Node, classes, **more):
    """Set ``classes`` (with ``more``: atomically with those, as set_parameters_atomically)."""
    params = [Parameter('classes', Parameter.Type.STRING_ARRAY, list(classes))]
    if not more:
        return node.set_parameters(params)[0]
    for name, value in more.items():
        node.declare_parameter(name, value)
    return node.set_parameters_atomically(params + [Parameter(k, value=v)
                                                    for k, v in more.items()])


def test_an_added_class_is_followed_kept_and_used_at_the_next_start(make_node, tmp_path):
    node, task, followed = make_node()
    assert task.classes == tuple(CLASSES) and read_saved_classes(task) is None
    result = set_classes(node, [*CLASSES, 'ok_sign'])
    assert result.successful, result.reason
    assert [t.classes for t in followed] == [(*CLASSES, 'ok_sign')]
    assert node.get_parameter('classes').value == [*CLASSES, 'ok_sign']
    assert read_saved_classes(task) == (*CLASSES, 'ok_sign')
    assert set_classes(node, [*CLASSES, 'ok_sign']).successful  # the same again: no change
    assert len(followed) == 1
    # a restart with the launch file's two classes starts with the three
    again, started, _ = make_node()
    assert started.classes == (*CLASSES, 'ok_sign')
    assert again.get_parameter('classes').value == [*CLASSES, 'ok_sign']


@pytest.mark.parametrize('proposed, more, reason', [
    (['thumbs_down', 'thumbs_up', 'ok'], {}, 'does not start with'),
    (['thumbs_up'], {}, 'at least 2'),
    ([*CLASSES, '../../x'], {}, 'not a safe name'),
    ([*CLASSES, 'ok', 'ok'], {}, 'duplicate'),
    ([*CLASSES, 'ok'], {'gain': 2.0}, 'on its own'),
])
def test_what_is_not_an_addition_is_refused_and_changes_nothing(make_node, proposed, more,
                                                                reason):
    node, task, followed = make_node()
    result = set_classes(node, proposed, **more)
    assert not result.successful and reason in result.reason, result.reason
    assert followed == [] and read_saved_classes(task) is None
    assert node.get_parameter('classes').value == CLASSES


def test_a_node_may_refuse_an_addition_while_it_is_busy(make_node):
    busy = ['a goal is running']
    node, task, followed = make_node(refuse_classes=lambda: busy[0])
    result = set_classes(node, [*CLASSES, 'ok'])
    assert not result.successful and result.reason == 'a goal is running'
    assert followed == [] and read_saved_classes(task) is None
    busy[0] = ''
    assert set_classes(node, [*CLASSES, 'ok']).successful and len(followed) == 1


def test_a_damaged_classes_file_does_not_stop_the_node(make_node, tmp_path):
    task = Task.create('thumbs', CLASSES, tmp_path)
    task.classes_file.parent.mkdir(parents=True)
    task.classes_file.write_text('task: thumbs\nclasses: [thumbs_up, ../x]\n')
    node, started, _ = make_node()
    assert started.classes == tuple(CLASSES)
    assert node.get_parameter('classes').value == CLASSES


def test_saved_classes_that_differ_from_the_configured_ones_are_not_used(make_node, tmp_path):
    save_classes(Task.create('thumbs', ['up', 'down', 'ok'], tmp_path))
    node, started, _ = make_node()
    assert started.classes == tuple(CLASSES)
