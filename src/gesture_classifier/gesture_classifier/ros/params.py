"""Parameter declaration with descriptors, and the task parameters every node shares."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from ..core.tasks import PRESETS, Task

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


def declare_task(node: Node, *, model: bool = False, dataset: bool = False) -> Task:
    """Declare ``task``, ``classes``, ``data_dir`` (and ``dataset_dir`` / ``model_path`` when
    asked) read-only, and build the Task.

    Raises:
        ValueError / InvalidNameError: bad task configuration (the node cannot start).
    """
    name = declare(node, 'task', 'thumbs', 'Task name; selects the dataset and model folders. '
                   f'Presets: {", ".join(sorted(PRESETS))}', read_only=True)
    classes = declare(node, 'classes', list(PRESETS.get(name, ('',))),
                      'Class names in model output order (>= 2). Defaults to the preset of '
                      '`task`.', read_only=True)
    data_dir = declare(node, 'data_dir', '~/.ros/gesture_classifier',
                       'Root folder: <data_dir>/<task>/dataset and <data_dir>/<task>/models',
                       read_only=True)
    dataset_dir = declare(node, 'dataset_dir', '', 'Dataset folder (<class>/*.jpg); empty: '
                          '<data_dir>/<task>/dataset', read_only=True) if dataset else ''
    model_path = declare(node, 'model_path', '', 'Model file; empty: '
                         '<data_dir>/<task>/models/resnet18.pt', read_only=True) if model else ''
    classes = [c for c in classes if c]
    return Task.create(name, classes, data_dir, dataset_dir or None, model_path or None)
