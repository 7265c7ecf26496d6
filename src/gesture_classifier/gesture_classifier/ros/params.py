"""Parameter declaration with descriptors, and the task parameters every node shares."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..core.tasks import (MAX_CLASSES, PRESETS, Task, read_saved_classes, resolve_classes,
                          save_classes)

__all__ = ['Param', 'declare', 'declare_all', 'declare_task']


@dataclass(frozen=True)
class Param:
    """A node parameter as a node file lists it: name, default (its type is the parameter's),
    description, and an optional range (``(low, high)``, ints for an int parameter) or
    constraint text."""

    name: str
    default: object
    description: str
    range: tuple | None = None
    constraints: str = ''


def declare(node: Node, name: str, default, description: str, *, read_only: bool = False,
            int_range: tuple[int, int] | None = None,
            float_range: tuple[float, float] | None = None, constraints: str = ''):
    """Declare a parameter with a descriptor (description, optional range) and return its
    value."""
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               additional_constraints=constraints)
    if int_range is not None:
        desc.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1],
                                           step=1)]
    if float_range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                        to_value=float(float_range[1]),
                                                        step=0.0)]
    return node.declare_parameter(name, default, desc).value


def declare_all(node: Node, params: Iterable[Param], *, read_only: bool = False,
                prefix: str = '') -> dict:
    """Declare each of ``params`` (named ``prefix + name``) with its descriptor; returns
    ``{name: value}`` (names without the prefix)."""
    values = {}
    for p in params:
        ranges = {}
        if p.range is not None:
            ranges['int_range' if isinstance(p.default, int) else 'float_range'] = p.range
        values[p.name] = declare(node, prefix + p.name, p.default, p.description,
                                 read_only=read_only, constraints=p.constraints, **ranges)
    return values


def declare_task(node: Node, *, model: bool = False, dataset: bool = False,
                 on_classes: Callable[[Task], None] | None = None,
                 refuse_classes: Callable[[], str] = lambda: '') -> Task:
    """Declare ``task``, ``data_dir`` (and ``dataset_dir`` / ``model_path`` when asked)
    read-only and ``classes``, and build the Task.

    ``classes`` may grow while the node runs (``ros2 param set``, the web page's "Add class"),
    append-only (:meth:`Task.with_classes`) and only when ``on_classes`` is given: a new list
    is checked, ``refuse_classes()`` may refuse it (a non-empty reason, e.g. the trainer while
    a goal runs), then it is saved (:func:`~..core.tasks.save_classes`) and
    ``on_classes(new_task)`` is called, in the thread that sets the parameter (the executor's
    for a ``set_parameters`` request; one change at a time). ``classes`` must be set alone
    (a request with other parameters is refused), so a node's own set-parameters callback,
    which ignores it, never applies half of a refused request. At start, classes saved by an
    earlier run that extend the configured ones are used (:func:`~..core.tasks.resolve_classes`)
    and the parameter is set to them.

    Raises:
        ValueError / InvalidNameError: bad task configuration (the node cannot start).
    """
    name = declare(node, 'task', 'thumbs', 'Task name; selects the dataset and model folders. '
                   f'Presets: {", ".join(sorted(PRESETS))}', read_only=True)
    classes = declare(node, 'classes', list(PRESETS.get(name, ('',))),
                      'Class names in model output order (2-'
                      f'{MAX_CLASSES}). Defaults to the preset of `task`. '
                      + ('Classes may be added at run time (append-only: the current ones '
                         'first, in order); the list is kept in <data_dir>/<task>/classes.yaml '
                         'and used at the next start when it extends this one (delete that '
                         'file to go back)' if on_classes else 'Read-only on this node'),
                      read_only=on_classes is None)
    data_dir = declare(node, 'data_dir', '~/.ros/gesture_classifier',
                       'Root folder: <data_dir>/<task>/dataset and <data_dir>/<task>/models',
                       read_only=True)
    dataset_dir = declare(node, 'dataset_dir', '', 'Dataset folder (<class>/*.jpg); empty: '
                          '<data_dir>/<task>/dataset', read_only=True) if dataset else ''
    model_path = declare(node, 'model_path', '', 'Model file; empty: '
                         '<data_dir>/<task>/models/resnet18.pt', read_only=True) if model else ''
    classes = [c for c in classes if c]
    task = Task.create(name, classes, data_dir, dataset_dir or None, model_path or None)
    if on_classes is None:
        return task
    try:
        resolved, note = resolve_classes(task, read_saved_classes(task))
    except ValueError as exc:  # a damaged file must not stop the node: the parameter holds
        resolved, note = task, f'{exc}; using the configured classes'
    if note:  # grown from the file: said; the file ignored: warned
        (node.get_logger().info if resolved is not task else node.get_logger().warning)(note)
    task = resolved
    if list(task.classes) != classes:
        node.set_parameters([Parameter('classes', Parameter.Type.STRING_ARRAY,
                                       list(task.classes))])
    current, lock = [task], threading.Lock()

    def on_set(params: list[Parameter]) -> SetParametersResult:
        with lock:  # a node may also set its own (the web node, from its HTTP thread)
            return _set_classes(params)

    def _set_classes(params: list[Parameter]) -> SetParametersResult:
        asked = [p for p in params if p.name == 'classes']
        if not asked:
            return SetParametersResult(successful=True)
        if len(params) > 1:  # so no other set-parameters callback applies half a request
            return SetParametersResult(successful=False, reason='set `classes` on its own, '
                                       'not with other parameters')
        try:
            new = current[0].with_classes(list(asked[0].value or ()))
        except ValueError as exc:  # InvalidNameError included
            return SetParametersResult(successful=False, reason=str(exc))
        if new.classes == current[0].classes:
            return SetParametersResult(successful=True)
        reason = refuse_classes()
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        try:
            save_classes(new)
        except OSError as exc:
            return SetParametersResult(successful=False, reason=f'could not keep the classes '
                                       f'in {new.classes_file}: {exc}')
        added = list(new.classes[len(current[0].classes):])
        current[0] = new
        on_classes(new)
        node.get_logger().info(f'classes {added} added: task {new.name!r} now has '
                               f'{list(new.classes)}')
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return task
