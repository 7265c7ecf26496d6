"""Start the nodes as separate processes with one parameter file, without ``launch``.

This is what ``ros2 launch gesture_classifier gesture_classifier.launch.py`` does on a robot,
for machines where the ``launch`` package is missing (see the README)::

    bringup --params-file config/gesture_classifier.yaml [--namespace ns] \
        [--set camera.source=/path/to/images] [--nodes camera classifier] [--no-web]

Each node runs as ``python -m gesture_classifier.nodes.<name> --ros-args -r __node:=<name>
--params-file <file> [--params-file <overrides>]``, the arguments launch_ros passes. Ctrl-C
(SIGINT) or SIGTERM stops all nodes; if one node exits, the others are stopped too.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ..ros.middleware import config_file
from ..ros.runtime import set_process_defaults

__all__ = ['NODES', 'OPTIONAL_NODES', 'ALL_NODES', 'enclave', 'node_command',
           'write_overrides', 'parse_overrides', 'default_params_file', 'NodeGroup', 'main']

#: The system's nodes, name -> module; the launch file starts the same names as executables.
NODES = {
    'camera': 'gesture_classifier.nodes.camera',
    'collector': 'gesture_classifier.nodes.collector',
    'trainer': 'gesture_classifier.nodes.trainer',
    'classifier': 'gesture_classifier.nodes.classifier',
}
#: Optional nodes, started too unless switched off (launch argument ``web:=false``,
#: ``bringup --no-web``): the web page, a client of the nodes above.
OPTIONAL_NODES = {'web': 'gesture_classifier.nodes.web'}
ALL_NODES = {**NODES, **OPTIONAL_NODES}


def default_params_file() -> Path:
    """config/gesture_classifier.yaml from the installed package share (colcon build) or, when
    running from a source checkout, from the repository."""
    return config_file('gesture_classifier.yaml')


def enclave(name: str) -> str:
    """SROS2 enclave of a node (config/sros2/policy.xml); unused unless ROS_SECURITY_ENABLE."""
    return f'/gesture_classifier/{name}'


def node_command(name: str, params_files: list[str | os.PathLike],
                 namespace: str = '') -> list[str]:
    """Command line that starts node ``name`` (a key of ALL_NODES); later parameter files
    override earlier ones."""
    cmd = [sys.executable, '-m', ALL_NODES[name], '--ros-args', '-r', f'__node:={name}',
           '--enclave', enclave(name)]
    if namespace:
        cmd += ['-r', f'__ns:=/{namespace.strip("/")}']
    for path in params_files:
        cmd += ['--params-file', str(path)]
    return cmd


class _NoAliasDumper(yaml.SafeDumper):
    """rcl's parameter-file parser does not support YAML anchors/aliases."""

    def ignore_aliases(self, data):
        return True


def write_overrides(overrides: dict[str, dict], directory: str | os.PathLike) -> Path:
    """Write ``{node: {param: value}}`` as a ROS parameter file (``/**/<node>`` sections, so it
    outranks the node sections of the main file, which ``-p`` would not)."""
    doc = {f'/**/{node}': {'ros__parameters': params} for node, params in overrides.items()}
    path = Path(directory) / 'overrides.yaml'
    path.write_text(yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False))
    return path


class NodeGroup:
    """The node processes; a context manager that always stops them."""

    def __init__(self, names, params_file, namespace='', overrides=None, env=None,
                 stdout=None, stderr=None):
        """Start ``names`` with ``params_file`` plus ``overrides`` ({node: {param: value}},
        values of any YAML type), in ``env`` (default: this process's environment) with the
        process defaults (ros.runtime.set_process_defaults) where it does not set them."""
        self.procs: dict[str, subprocess.Popen] = {}
        env = dict(os.environ if env is None else env)
        set_process_defaults(env)
        self._tmp = tempfile.TemporaryDirectory(prefix='gesture_bringup_')
        files = [params_file] if params_file else []
        if overrides:
            files.append(write_overrides(overrides, self._tmp.name))
        for name in names:
            self.procs[name] = subprocess.Popen(node_command(name, files, namespace), env=env,
                                                stdout=stdout, stderr=stderr)

    def poll(self) -> dict[str, int]:
        """Exit codes of the nodes that have exited."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT every node (clean rclpy shutdown), then SIGKILL what is left after
        ``timeout`` seconds."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``['camera.source=/x', 'trainer.seed=3']`` -> ``{'camera': {'source': '/x'},
    'trainer': {'seed': 3}}``; values are parsed as YAML (``3`` int, ``3.0`` float, ``true``
    bool, anything else a string).

    Raises:
        ValueError: an item not of the form NODE.PARAM=VALUE or an unknown node.
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition('=')
        node, dot, param = key.partition('.')
        if not sep or not dot or not param:
            raise ValueError(f'--set expects NODE.PARAM=VALUE, got {item!r}')
        nodes = list(ALL_NODES) if node == '*' else [node]
        for n in nodes:
            if n not in ALL_NODES:
                raise ValueError(f'unknown node {n!r} in --set; nodes: {", ".join(ALL_NODES)}')
            out.setdefault(n, {})[param] = _yaml_value(value)
    return out


def _yaml_value(text: str):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str, list)) else text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='bringup', description=__doc__.splitlines()[0])
    parser.add_argument('--params-file', default=None,
                        help='parameter file (default: the package\'s '
                             'config/gesture_classifier.yaml)')
    parser.add_argument('--namespace', default='', help='namespace of all nodes')
    parser.add_argument('--nodes', nargs='+', choices=list(ALL_NODES), default=list(ALL_NODES))
    parser.add_argument('--no-web', action='store_true',
                        help='do not start the web node (the page at http://127.0.0.1:8080/)')
    parser.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                        help="override a parameter, e.g. camera.source=/dev/video1 "
                             "('*' for every node)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    if args.no_web:
        args.nodes = [n for n in args.nodes if n != 'web']
    params = args.params_file or default_params_file()
    print(f'bringup: starting {", ".join(args.nodes)} with {params}', flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    with NodeGroup(args.nodes, params, args.namespace, overrides) as group:
        try:
            while not stop:
                exited = group.poll()
                if exited:
                    print(f'bringup: node(s) exited: {exited}; stopping the others',
                          file=sys.stderr, flush=True)
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
