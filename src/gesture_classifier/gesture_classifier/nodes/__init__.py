"""ROS 2 nodes, one thin file per node: parameters (with descriptors), interfaces, and
callbacks that delegate to :mod:`gesture_classifier.core` through the helpers of
:mod:`gesture_classifier.ros`.

The console scripts of the nodes (setup.py) are the functions below rather than each module's
``main`` (``start_<node>``): they set the process defaults (:func:`~gesture_classifier.ros.runtime.
set_process_defaults`) *before* importing the node's module, which imports torch through the
core, because OpenMP reads ``OMP_WAIT_POLICY`` only once, when torch loads it.
``python -m gesture_classifier.nodes.<name>`` (what ``bringup`` runs) gets the same defaults
from bringup, which sets them in each node's environment.
"""
from __future__ import annotations

import importlib

from ..ros.runtime import set_process_defaults

__all__ = ['start_camera', 'start_classifier', 'start_collector', 'start_trainer',
           'start_web']


def _start(name: str, args=None):
    set_process_defaults()
    return importlib.import_module(f'{__name__}.{name}').main(args)


def start_camera(args=None):
    return _start('camera', args)


def start_classifier(args=None):
    return _start('classifier', args)


def start_collector(args=None):
    return _start('collector', args)


def start_trainer(args=None):
    return _start('trainer', args)


def start_web(args=None):
    return _start('web', args)
